// jupyterhub_ext: the one script of our pages, served by the hub at
// {base_url}jupyterhub-ext/static/jhext.js as an ES module.
//
// Templates lay out markup and pass settings in <script type="application/json">
// blocks; each page calls one export below (homePage, notificationsPage,
// renamePage). Every text that comes from a person (names, messages, errors)
// reaches the page through textContent, never as HTML.

// -- shared helpers ---------------------------------------------------------

/** Settings a template passed in <script type="application/json" id="...">. */
export function settings(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
}

/** The hub's REST API as the page's user, the way JupyterHub's own jhapi.js calls it:
 * paths relative to {base_url}api/, the XSRF token in a header, cookies sent. */
export class HubAPI {
  constructor(baseUrl = window.jhdata.base_url, xsrfToken = window.jhdata.xsrf_token) {
    this.base = baseUrl + "api/";
    this.xsrf = xsrfToken;
  }

  /** Resolves to {status, ok, data} for any HTTP answer; rejects only when no answer came. */
  async request(method, path, body) {
    const opts = {
      method,
      credentials: "same-origin",
      headers: { "X-XSRFToken": this.xsrf, Accept: "application/json" },
    };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(this.base + path, opts);
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null; // an HTML error page: errorText() falls back to the status
    }
    return { status: resp.status, ok: resp.ok, data };
  }

  /** The answer's data; an HTTP error throws an Error carrying the hub's message. */
  async json(method, path, body) {
    const r = await this.request(method, path, body);
    if (!r.ok) throw new Error(errorText(r));
    return r.data;
  }
}

/** What the hub said went wrong (its JSON "message"), or the status. */
export function errorText(r) {
  return (r.data && r.data.message) || "The hub answered " + r.status + ".";
}

/** A new element with attributes and (optional) text, set as text. */
export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Bytes for people: SI units as `du -h --si` prints them, or binary ones
 * (KiB, MiB) as `docker stats` does, for admins comparing with it. */
export function humanSize(bytes, { binary = false, unknown = "size not known yet" } = {}) {
  if (bytes === null || bytes === undefined) return unknown;
  const step = binary ? 1024 : 1000;
  const units = binary ? ["B", "KiB", "MiB", "GiB", "TiB"] : ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (bytes >= step && i < units.length - 1) {
    bytes /= step;
    i++;
  }
  // "1 GiB", "1.5 GiB": as the hub's own profiles.human_size writes them
  return (i ? bytes.toFixed(1).replace(/\.0$/, "") : String(bytes)) + " " + units[i];
}

const byId = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- home page: restart a server, reset volumes of a stopped one -----------

export function homePage() {
  const api = new HubAPI();
  const userPath = "users/" + encodeURIComponent(window.jhdata.user);
  const serverPath = (name) => (name ? "/servers/" + encodeURIComponent(name) : "");
  const serverLabel = (name) => (name ? "server “" + name + "”" : "your server");
  const capitalized = (text) => text.charAt(0).toUpperCase() + text.slice(1);

  // Named-server rows: our buttons come as one <template> per server from home.html;
  // add them to the end of the row's Actions cell (nothing of the stock row moves).
  document.querySelectorAll("template.jhext-row-actions").forEach((tpl) => {
    const name = tpl.getAttribute("data-server-name");
    const row = document.querySelector('tr.home-server-row[data-server-name="' + CSS.escape(name) + '"]');
    if (row && row.lastElementChild) row.lastElementChild.append(tpl.content.cloneNode(true));
  });

  // status area: progress and outcome of actions, announced politely
  const statusBox = byId("jhext-status");
  let statusFor = null; // the server the status message is about
  function clearStatusOf(name) {
    if (statusFor === name) statusBox.replaceChildren();
  }
  function showStatus(kind, message, busy, link, name) {
    statusFor = name === undefined ? null : name;
    statusBox.replaceChildren();
    const box = el("div", { class: "alert alert-" + kind + " d-inline-block" });
    if (busy) box.appendChild(el("span", { class: "spinner-border spinner-border-sm me-2", "aria-hidden": "true" }));
    box.appendChild(document.createTextNode(message));
    if (link) {
      box.appendChild(document.createTextNode(" "));
      box.appendChild(el("a", { href: link.href, class: "alert-link" }, link.text));
    }
    statusBox.appendChild(box);
  }

  // which buttons show: Restart while a server runs, Manage Volumes while it is stopped.
  // The page renders the state at load; only the stock Stop buttons (#stop, a row's
  // .stop-server) change it without leaving the page (Start and Add go to other pages).
  // So on a click of one, ask the hub's REST API until that server has stopped.
  function ourButtons(name) {
    const sel = (cls) => "." + cls + '[data-server-name="' + CSS.escape(name) + '"]';
    return document.querySelectorAll(sel("jhext-restart") + "," + sel("jhext-manage-volumes"));
  }
  function showStopped(name) {
    ourButtons(name).forEach((b) => {
      b.hidden = b.classList.contains("jhext-restart");
    });
    clearStatusOf(name); // an earlier "restarted, open it" no longer holds
  }
  const stopping = new Set();
  async function followStop(name) {
    if (stopping.has(name)) return;
    stopping.add(name);
    const deadline = Date.now() + 5 * 60 * 1000;
    try {
      while (Date.now() < deadline) {
        await sleep(1000);
        const r = await api.request("GET", userPath + (name ? serverPath(name) : "/server"));
        // a refused stop leaves it running (the stock page says why); keep asking until the deadline
        if (r.status === 404 || (r.ok && r.data.stopped)) return showStopped(name);
      }
    } catch (e) {
      // no answer from the hub: leave the buttons as they are, as the stock page does
    } finally {
      stopping.delete(name);
    }
  }
  document.addEventListener("click", (ev) => {
    const stop = ev.target.closest("#stop, tr.home-server-row .stop-server");
    if (!stop) return;
    const row = stop.closest("tr.home-server-row[data-server-name]");
    followStop(row ? row.getAttribute("data-server-name") : "");
  });

  function setBusy(name, busy) {
    ourButtons(name).forEach((b) => {
      b.disabled = busy;
    });
  }

  // -- restart --
  const restartDialog = byId("jhext-restart-dialog");
  const restartModal = new bootstrap.Modal(restartDialog);
  restartDialog.addEventListener("shown.bs.modal", () => byId("jhext-restart-confirm").focus());
  let restartTarget = null;
  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest(".jhext-restart");
    if (!btn) return;
    restartTarget = btn.getAttribute("data-server-name") || "";
    restartDialog.querySelectorAll(".jhext-server-label").forEach((e) => {
      e.textContent = serverLabel(restartTarget);
    });
    restartModal.show(btn);
  });

  function finishRestart(name, kind, message, url) {
    setBusy(name, false);
    showStatus(kind, message, false, url ? { href: url, text: "Open it" } : null, name);
  }

  async function followSpawn(name, label) {
    // poll the server model until the new spawn finishes
    const path = userPath + (name ? serverPath(name) : "/server");
    const deadline = Date.now() + 5 * 60 * 1000;
    for (;;) {
      const r = await api.request("GET", path);
      if (!r.ok) return finishRestart(name, "danger", "Could not follow the restart: " + errorText(r));
      if (r.data.ready) return finishRestart(name, "success", label + " restarted and is ready.", r.data.url);
      if (!r.data.pending) {
        return finishRestart(name, "danger", label + " stopped but did not start again. Try starting it.");
      }
      if (Date.now() > deadline) {
        return finishRestart(name, "warning", label + " is still starting; reload this page later.");
      }
      await sleep(1000);
    }
  }

  byId("jhext-restart-confirm").addEventListener("click", async () => {
    const name = restartTarget;
    const label = capitalized(serverLabel(name));
    restartModal.hide();
    setBusy(name, true);
    showStatus("info", "Restarting " + serverLabel(name) + "… stopping it, then starting it again.", true, null, name);
    let r;
    try {
      r = await api.request("POST", userPath + serverPath(name) + "/restart-server");
    } catch (err) {
      return finishRestart(name, "danger", "Restart failed: " + err);
    }
    if (r.status === 200) {
      finishRestart(name, "success", label + " restarted and is ready.", r.data.server.url);
    } else if (r.status === 202) {
      showStatus("info", label + " stopped; it is starting again…", true, null, name);
      await followSpawn(name, label);
    } else {
      finishRestart(name, "danger", "Restart failed: " + errorText(r));
    }
  });

  // -- manage volumes: choose -> confirm -> progress -> outcome, inside one dialog --
  const volDialog = byId("jhext-volumes-dialog");
  const volModal = new bootstrap.Modal(volDialog);
  const btnCancel = byId("jhext-volumes-cancel");
  const btnBack = byId("jhext-volumes-back");
  const btnNext = byId("jhext-volumes-next");
  const btnConfirm = byId("jhext-volumes-confirm");
  const list = byId("jhext-volume-list");
  let volTarget = "";
  let volumes = [];
  let volShown = false;
  let focusOnShown = null;
  volDialog.addEventListener("shown.bs.modal", () => {
    volShown = true;
    if (focusOnShown) focusOnShown.focus();
    focusOnShown = null;
  });
  volDialog.addEventListener("hidden.bs.modal", () => {
    volShown = false;
  });
  // Bootstrap focuses the dialog itself once it is shown; move focus after that
  function focusInDialog(target) {
    if (volShown) target.focus();
    else focusOnShown = target;
  }

  function step(name) {
    volDialog.querySelectorAll(".jhext-step").forEach((s) => {
      s.hidden = s.getAttribute("data-step") !== name;
    });
    btnBack.hidden = name !== "confirm";
    btnNext.hidden = name !== "choose";
    btnConfirm.hidden = name !== "confirm";
    btnCancel.hidden = name === "progress";
    btnCancel.textContent = name === "outcome" ? "Close" : "Cancel";
  }
  const chosen = () => Array.from(list.querySelectorAll("input[type=checkbox]:checked"), (c) => c.value);

  function volumeItem(v) {
    const id = "jhext-vol-" + v.key;
    const check = el("div", { class: "form-check" });
    const box = el("input", {
      class: "form-check-input",
      type: "checkbox",
      value: v.key,
      id,
      "aria-describedby": id + "-desc " + id + "-size",
    });
    const label = el("label", { class: "form-check-label fw-semibold", for: id }, v.key);
    label.append(" ", el("code", {}, v.mount));
    const size = v.exists ? humanSize(v.size) : "not created yet (empty)";
    check.append(
      box,
      label,
      el("div", { class: "small", id: id + "-desc" }, v.description || ""),
      el("div", { class: "small text-body-secondary jhext-size", id: id + "-size" }, size),
    );
    const li = el("li", { class: "list-group-item" });
    li.appendChild(check);
    return li;
  }

  function renderVolumes(data) {
    volumes = data.volumes;
    const resettable = volumes.filter((v) => v.resettable);
    const kept = volumes.filter((v) => !v.resettable);
    list.replaceChildren(...resettable.map(volumeItem));
    if (!resettable.length) {
      list.appendChild(el("li", { class: "list-group-item" }, "No volume of this server can be reset."));
    }
    const keptBox = byId("jhext-volumes-kept");
    keptBox.hidden = !kept.length;
    keptBox.textContent = kept.length
      ? "Always kept: " +
        kept.map((v) => v.key + " (" + v.mount + (v.scope === "shared" ? ", shared" : "") + ")").join(", ") +
        "."
      : "";
    const blocked = byId("jhext-volumes-blocked");
    blocked.hidden = !data.blocking_servers.length;
    blocked.textContent = data.blocking_servers.length
      ? "Stop these servers first, they use these volumes: " + data.blocking_servers.join(", ")
      : "";
    btnNext.disabled = true;
    step("choose");
    const first = list.querySelector("input");
    if (first) focusInDialog(first);
  }

  list.addEventListener("change", () => {
    btnNext.disabled = chosen().length === 0;
  });

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest(".jhext-manage-volumes");
    if (!btn) return;
    volTarget = btn.getAttribute("data-server-name") || "";
    volDialog.querySelectorAll(".jhext-server-label").forEach((e) => {
      e.textContent = serverLabel(volTarget);
    });
    step("loading");
    volModal.show(btn);
    const r = await api.request("GET", userPath + serverPath(volTarget) + "/manage-volumes");
    if (r.ok) renderVolumes(r.data);
    else showOutcome("danger", "Could not list the volumes: " + errorText(r), []);
  });

  btnNext.addEventListener("click", () => {
    const keys = chosen();
    const text = byId("jhext-confirm-text");
    const ul = el("ul", { class: "mb-2" });
    for (const v of volumes) {
      if (keys.includes(v.key)) {
        ul.appendChild(el("li", {}, v.key + " (" + v.mount + ", " + humanSize(v.exists ? v.size : 0) + ")"));
      }
    }
    text.replaceChildren(
      el("p", { class: "fw-semibold" }, "This permanently deletes everything in:"),
      ul,
      el("p", { class: "mb-0" }, "It cannot be undone. Continue?"),
    );
    step("confirm");
    text.focus();
  });
  btnBack.addEventListener("click", () => {
    step("choose");
    const first = list.querySelector("input:checked") || list.querySelector("input");
    if (first) first.focus();
  });

  function showOutcome(kind, message, results) {
    const summary = byId("jhext-outcome-summary");
    summary.className = "alert mb-2 alert-" + kind;
    summary.textContent = message;
    const out = byId("jhext-outcome-list");
    out.replaceChildren();
    for (const res of results) {
      const li = el("li", { class: "list-group-item jhext-result", "data-key": res.key, "data-status": res.status });
      const badge = "badge me-2 " + (res.ok ? "text-bg-success" : "text-bg-danger");
      li.append(el("span", { class: badge }, res.ok ? "done" : "failed"), el("strong", {}, res.key), ": " + res.message);
      out.appendChild(li);
    }
    step("outcome");
    focusInDialog(summary);
  }

  btnConfirm.addEventListener("click", async () => {
    const keys = chosen();
    const target = volTarget;
    step("progress");
    setBusy(target, true);
    showStatus("info", "Resetting volumes of " + serverLabel(target) + "…", true);
    let r;
    try {
      r = await api.request("DELETE", userPath + serverPath(target) + "/manage-volumes", { volumes: keys });
    } catch (err) {
      setBusy(target, false);
      showOutcome("danger", "Reset failed: " + err, []);
      showStatus("danger", "Reset failed: " + err);
      return;
    }
    setBusy(target, false);
    const results = (r.data && r.data.volumes) || [];
    const kind = r.ok ? "success" : "danger";
    const message = r.ok
      ? "Reset " + keys.join(", ") + ". The next start of " + serverLabel(target) + " creates " +
        (keys.length > 1 ? "them" : "it") + " again, empty."
      : "Reset failed: " + errorText(r);
    showOutcome(kind, message, results);
    showStatus(kind, message);
  });
  showQuotaWarnings(api, userPath);
  showGrants(api, userPath);
  showCulling(api, userPath, serverPath, serverLabel, capitalized);
}

/** Idle culling: for each server near its stop a note with a Keep running button,
 * and for servers stopped for inactivity why (GET/POST users/{name}/keep-running). */
async function showCulling(api, userPath, serverPath, serverLabel, capitalized) {
  const box = byId("jhext-culling");
  if (!box) return;
  let r;
  try {
    r = await api.request("GET", userPath + "/keep-running");
  } catch (e) {
    return;
  }
  if (!r.ok || !r.data || !r.data.enabled) return; // culling is not enabled on this hub
  const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const now = Date.now() / 1000;
  const alerts = [];
  for (const [name, note] of Object.entries(r.data.culled || {})) {
    const a = el("div", { class: "alert alert-info jhext-culled", "data-server-name": name });
    a.textContent = capitalized(serverLabel(name)) + " was stopped at " + clock(note.at) + " after " +
      Math.round(note.idle_seconds / 60) + " min without activity (the limit is " +
      Math.round(note.timeout / 60) + " min). Your files are kept; start it again when you need it.";
    alerts.push(a);
  }
  for (const [name, s] of Object.entries(r.data.servers || {})) {
    if (s.deadline === null || s.deadline - now > r.data.warning) continue;
    const a = el("div", { class: "alert alert-warning jhext-cull-warning", "data-server-name": name });
    const text = el("span");
    const describe = (info, kept) => {
      text.textContent = (kept ? "Kept running. " : "") + capitalized(serverLabel(name)) + " stops at " + clock(info.deadline) +
        " for inactivity. " + (info.extensions_left ? "Keep running adds " + Math.round(info.extension_seconds / 60) +
        " min (" + info.extensions_left + " left). " : "It can no longer be extended; save your work. ");
    };
    describe(s);
    a.appendChild(text);
    if (s.extensions_left) {
      const btn = el("button", { type: "button", class: "btn btn-sm btn-warning jhext-keep-running" }, "Keep running");
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        const res = await api.request("POST", userPath + serverPath(name) + "/keep-running");
        if (res.ok) {
          describe(res.data, true);
          a.className = "alert alert-success jhext-cull-warning";
          if (res.data.extensions_left) btn.disabled = false;
          else btn.remove();
        } else {
          text.textContent = errorText(res) + " ";
        }
      });
      a.appendChild(btn);
    }
    alerts.push(a);
  }
  box.replaceChildren(...alerts);
  box.hidden = !alerts.length;
}

/** "What you get": per server its profile, image, limits, GPUs and Docker access,
 * and which group granted what (GET /hub/api/users/{name}/grants). */
async function showGrants(api, userPath) {
  const box = byId("jhext-grants");
  if (!box) return;
  const r = await api.request("GET", userPath + "/grants");
  if (!r.ok || !r.data) return;
  const data = r.data;
  const size = (n) => (n ? humanSize(n, { binary: true }) : "no limit");
  const cell = (text, cls) => el("td", cls ? { class: cls } : {}, text);
  const rows = data.servers.map((s) => {
    const row = el("tr", { "data-server-name": s.name });
    row.appendChild(el("th", { scope: "row" }, (s.name || "default") + (s.running ? " (running)" : " (next start)")));
    let profile = s.profile ? s.profile.display_name : s.profile_error || "-";
    if (s.profile && s.profile_granted_by.length) profile += " (via group " + s.profile_granted_by.join(", ") + ")";
    let mem = size(s.mem_limit);
    if (s.mem_guarantee) mem += " (" + size(s.mem_guarantee) + " guaranteed)";
    const gpus = s.gpu_devices && s.gpu_devices.length ? s.gpu_devices.join(", ") : s.gpus ? "yes" : "none";
    const access = [];
    if (s.docker_sock) access.push("Docker socket" + (s.granted_by.docker_sock ? " (group " + s.granted_by.docker_sock + ")" : ""));
    if (s.privileged) access.push("privileged" + (s.granted_by.privileged ? " (group " + s.granted_by.privileged + ")" : ""));
    row.append(
      cell(profile, "jhext-grants-profile"),
      cell(s.image || "-", "font-monospace small"),
      cell(s.cpu_limit ? String(Math.round(s.cpu_limit * 100) / 100) : "no limit"),
      cell(mem),
      cell(gpus, "jhext-grants-gpus"),
      cell(access.join(", ") || "none"),
    );
    return row;
  });
  box.querySelector("tbody").replaceChildren(...rows);
  byId("jhext-grants-caption").textContent = "Your groups: " + (data.groups.join(", ") || "none") + ".";
  if (data.profiles.length) {
    const names = data.profiles.map((p) => p.display_name + (p.slug === data.default_profile ? " (default)" : ""));
    byId("jhext-grants-profiles").textContent = "Profiles you may choose when you start a server: " + names.join(", ") + ".";
  }
  box.hidden = false;
}

/** Volumes over their quota: one alert each below the home page's buttons.
 * States come from the manage-volumes API (sizes from the hub's periodic scan). */
async function showQuotaWarnings(api, userPath) {
  let r;
  try {
    r = await api.request("GET", userPath + "/manage-volumes");
  } catch (e) {
    return; // the page works without the warnings
  }
  const quota = r.ok && r.data && r.data.quota;
  if (!quota) return;
  const over = Object.keys(quota).filter((k) => quota[k].state !== "ok");
  if (!over.length) return;
  const box = byId("jhext-quota-warnings");
  if (!box) return;
  box.replaceChildren(
    ...over.map((key) => {
      const q = quota[key];
      const alert = el("div", { class: "alert " + (q.refuses_start ? "alert-danger" : "alert-warning"), role: "alert" }, q.message);
      alert.dataset.volume = key;
      alert.dataset.state = q.state;
      return alert;
    }),
  );
  box.hidden = false;
}

// -- /hub/notifications: broadcast to running JupyterLab servers ------------

export function notificationsPage() {
  const cfg = settings("notify-config");
  const api = new HubAPI();
  const call = (method, path, body) => api.json(method, "notifications/" + path, body);
  const message = byId("notify-message");
  const count = byId("notify-count");
  const sendButton = byId("notify-send");
  const status = byId("notify-status");
  const autoclose = byId("notify-autoclose");
  const sticky = byId("notify-sticky");
  const serverBox = byId("notify-servers");
  let sending = false;

  // Same count as the hub: code points of the trimmed text.
  const length = (text) => Array.from(text.trim()).length;
  const cell = (text, className) => el("td", className ? { class: className } : {}, text);
  const badge = (text, className) => {
    const td = el("td");
    td.appendChild(el("span", { class: "badge " + className }, text));
    return td;
  };
  const variantClass = {
    default: "text-bg-secondary",
    info: "text-bg-info",
    success: "text-bg-success",
    warning: "text-bg-warning",
    error: "text-bg-danger",
    "in-progress": "text-bg-primary",
  };
  const chosen = () =>
    Array.from(serverBox.querySelectorAll("input:checked"), (input) => ({
      username: input.dataset.username,
      server: input.dataset.server,
    }));
  const toAll = () => byId("notify-to-all").checked;

  function update() {
    const n = length(message.value);
    count.textContent = String(n);
    const tooLong = n > cfg.max_length;
    count.parentElement.classList.toggle("text-danger", tooLong);
    message.classList.toggle("is-invalid", tooLong);
    autoclose.disabled = sticky.checked;
    const haveRecipients = toAll() || chosen().length > 0;
    sendButton.disabled = sending || n === 0 || tooLong || !haveRecipients;
  }

  function showServers(servers) {
    byId("notify-active-count").textContent = String(servers.length);
    const keep = new Set(chosen().map((s) => s.username + "/" + s.server));
    serverBox.replaceChildren();
    if (!servers.length) serverBox.appendChild(el("span", { class: "text-body-secondary" }, "No server is running."));
    servers.forEach((s, i) => {
      const input = el("input", { type: "checkbox", class: "form-check-input notify-server", id: "notify-server-" + i });
      input.dataset.username = s.username;
      input.dataset.server = s.server;
      input.checked = keep.has(s.username + "/" + s.server);
      input.addEventListener("change", () => {
        byId("notify-to-chosen").checked = true;
        update();
      });
      const label = el("label", { class: "form-check-label", for: input.id }, s.server ? s.username + " / " + s.server : s.username);
      const div = el("div", { class: "form-check" });
      div.append(input, label);
      serverBox.appendChild(div);
    });
    update();
  }

  async function loadServers() {
    try {
      showServers((await call("GET", "active-servers")).servers);
    } catch (e) {
      serverBox.textContent = "Could not list servers: " + e.message;
    }
  }

  function showHistory(entries) {
    const body = byId("notify-history-body");
    body.replaceChildren();
    if (!entries.length) {
      const td = cell("No broadcast yet.", "text-body-secondary");
      td.colSpan = 6;
      body.appendChild(el("tr")).appendChild(td);
    }
    for (const e of entries) {
      const tr = el("tr");
      const when = new Date(e.time);
      tr.append(
        cell(isNaN(when) ? e.time : when.toLocaleString()),
        cell(e.sender),
        badge(e.variant, variantClass[e.variant] || "text-bg-secondary"),
        cell(e.message, "notify-history-message text-break"),
        cell(e.recipients === "all" ? "all running" : e.recipients.join(", ")),
        cell(e.successful + " / " + e.total),
      );
      if (e.failures && e.failures.length) {
        tr.title = e.failures.map((f) => f.username + (f.server ? "/" + f.server : "") + ": " + f.error).join("\n");
      }
      body.appendChild(tr);
    }
  }

  async function loadHistory() {
    try {
      showHistory((await call("GET", "history")).history);
    } catch (e) {
      byId("notify-history-body").textContent = "Could not load the history: " + e.message;
    }
  }

  function showResult(result) {
    byId("notify-results").hidden = false;
    byId("notify-summary").textContent =
      result.total === 0
        ? "No server was running: nothing was sent."
        : result.successful + " of " + result.total + " delivered, " + result.failed + " failed.";
    const body = byId("notify-results-body");
    body.replaceChildren();
    for (const d of result.details) {
      const tr = el("tr");
      tr.dataset.username = d.username;
      tr.dataset.server = d.server;
      tr.append(
        cell(d.username),
        cell(d.server || "(default)"),
        badge(d.status, d.status === "delivered" ? "text-bg-success" : "text-bg-danger"),
        cell(d.error || ""),
      );
      body.appendChild(tr);
    }
  }

  async function send(event) {
    event.preventDefault();
    if (sendButton.disabled) return;
    const body = {
      message: message.value,
      variant: byId("notify-variant").value,
      autoClose: sticky.checked ? false : Math.round(Number(autoclose.value || 5) * 1000),
    };
    if (!toAll()) body.recipients = chosen();
    sending = true;
    update();
    status.className = "ms-2 text-body-secondary";
    status.textContent = "Sending…";
    try {
      const result = await call("POST", "broadcast", body);
      status.className = "ms-2 " + (result.failed ? "text-warning-emphasis" : "text-success");
      status.textContent = result.failed ? "Sent, with failures." : "Sent.";
      showResult(result);
      await Promise.all([loadHistory(), loadServers()]);
    } catch (e) {
      status.className = "ms-2 text-danger";
      status.textContent = "Not sent: " + e.message;
    } finally {
      sending = false;
      update();
    }
  }

  byId("notify-max").textContent = String(cfg.max_length);
  for (const v of cfg.variants) {
    const opt = el("option", { value: v }, v);
    if (v === "info") opt.selected = true;
    byId("notify-variant").appendChild(opt);
  }
  if (cfg.default_auto_close > 0) {
    autoclose.value = String(cfg.default_auto_close);
  } else {
    autoclose.value = "5";
    sticky.checked = true;
  }
  message.addEventListener("input", update);
  sticky.addEventListener("change", update);
  document.querySelectorAll("input[name=notify-to]").forEach((input) => input.addEventListener("change", update));
  byId("notify-refresh").addEventListener("click", loadServers);
  byId("notify-form").addEventListener("submit", send);
  update();
  loadServers();
  loadHistory();
}

// -- /hub/rename: rename a user with their login and data ------------------

export function renamePage() {
  const api = new HubAPI();
  const PHASES = {
    queued: "waiting",
    copying: "copying",
    verifying: "checking the copy",
    committing: "renaming",
    removing: "removing the old copy",
    done: "done",
  };
  const jobPath = (name, id) => "users/" + encodeURIComponent(name) + "/rename?id=" + encodeURIComponent(id);
  let current = null; // the job on screen

  function showError(message) {
    const box = byId("jhext-rename-error");
    box.textContent = message;
    box.classList.remove("d-none");
  }

  function moveRow(move, live) {
    const total = live.total != null ? live.total : move.bytes;
    let copied = live.copied || 0;
    if (["verified", "removed"].includes(move.state)) copied = total || copied;
    const pct = total ? Math.min(100, Math.round((100 * copied) / total)) : move.state === "planned" ? 0 : 100;
    const of = humanSize(copied) + " of " + humanSize(total);
    const row = el("div", { class: "mb-2" });
    const label = el("div", { class: "small" }, move.key + ": " + move.old + " → " + move.new + " (" + of + ", " + move.state + ")");
    const bar = el("div", {
      class: "progress",
      role: "progressbar",
      "aria-label": "copy of " + move.old,
      "aria-valuenow": String(pct),
      "aria-valuemin": "0",
      "aria-valuemax": "100",
    });
    const fill = el("div", { class: "progress-bar" }, pct + "%");
    fill.style.width = pct + "%";
    bar.appendChild(fill);
    row.append(label, bar);
    return row;
  }

  function render(job) {
    current = job;
    // cancellable until its commit point (the names change then)
    byId("jhext-rename-cancel").classList.toggle("d-none", !(job.state === "copying" && job.running));
    byId("jhext-rename-status").classList.remove("d-none");
    byId("jhext-rename-title").textContent = job.old_name + " → " + job.new_name;
    const progress = job.progress || {};
    byId("jhext-rename-phase").textContent =
      job.state === "done" ? "done" : job.state === "rolled_back" ? "rolled back" : PHASES[progress.phase] || job.state;
    const moves = (job.plan && job.plan.moves) || [];
    byId("jhext-rename-volumes").replaceChildren(...moves.map((m) => moveRow(m, (progress.moves || {})[m.old] || {})));
    const result = byId("jhext-rename-result");
    if (job.state === "done") {
      result.className = "alert alert-success mt-2";
      result.textContent =
        "Done: " + job.old_name + " is now " + job.new_name + "; " + moves.length +
        " volume(s) moved and verified. The same password works under the new name.";
    } else if (job.state === "rolled_back") {
      result.className = "alert alert-danger mt-2";
      result.textContent = "Not renamed, nothing changed: " + (job.error || "the rename was rolled back");
    } else if (job.error && !job.running) {
      result.className = "alert alert-warning mt-2";
      result.textContent = "Renamed, but the data has not fully moved: " + job.error + " Re-run the same rename to finish it.";
    } else {
      result.className = "alert d-none";
    }
  }

  async function follow(name, id) {
    for (;;) {
      let job;
      try {
        job = await api.json("GET", jobPath(name, id));
      } catch (e) {
        showError(e.message);
        return;
      }
      render(job);
      if (["done", "rolled_back"].includes(job.state) || (job.error && !job.running)) {
        byId("jhext-rename-submit").disabled = false;
        return;
      }
      await sleep(1000);
    }
  }

  byId("jhext-rename-cancel").addEventListener("click", async () => {
    if (!current) return;
    byId("jhext-rename-cancel").disabled = true;
    try {
      render(await api.json("DELETE", jobPath(current.old_name, current.id)));
    } catch (e) {
      showError(e.message);
    } finally {
      byId("jhext-rename-cancel").disabled = false;
    }
  });

  byId("jhext-rename-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    byId("jhext-rename-error").classList.add("d-none");
    const user = byId("jhext-rename-user").value;
    const newName = byId("jhext-rename-new").value.trim();
    if (!user || !newName) {
      showError("Choose a user and type the new name.");
      return;
    }
    byId("jhext-rename-submit").disabled = true;
    try {
      const job = await api.json("PATCH", "users/" + encodeURIComponent(user) + "/rename", { new_name: newName });
      render(job);
      await follow(job.new_name, job.id);
    } catch (e) {
      showError(e.message);
      byId("jhext-rename-submit").disabled = false;
    }
  });
}

// -- /hub/servers: every running server's resource use (read-usage scope) ---

export function serversPage() {
  const cfg = settings("servers-config");
  const api = new HubAPI();
  const bytes = (n) => humanSize(n, { binary: true, unknown: "" });
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  const blank = (v) => v === null || v === undefined || v === "";
  let data = null;
  let sortKey = "user";
  let sortDir = 1;

  function volumeKeys() {
    const keys = new Set();
    for (const s of data.servers) Object.keys(s.volumes || {}).forEach((k) => keys.add(k));
    return Array.from(keys).sort();
  }
  // one definition of the columns: the table and the CSV are made from it
  function columns() {
    const cols = [
      { key: "user", title: "User", raw: (s) => s.user },
      { key: "server", title: "Server", raw: (s) => s.server },
      { key: "image", title: "Profile / image", raw: (s) => s.profile || s.image },
      { key: "started", title: "Started", raw: (s) => s.started || "", show: (s) => when(s.started) },
      { key: "last_activity", title: "Last activity", raw: (s) => s.last_activity || "", show: (s) => when(s.last_activity) },
      {
        key: "cpu_percent",
        title: "CPU %",
        num: true,
        raw: (s) => s.cpu_percent,
        show: (s) => (s.cpu_percent === null ? "" : s.cpu_percent.toFixed(1)),
      },
      { key: "memory_bytes", title: "Memory", num: true, raw: (s) => s.memory_bytes, show: (s) => bytes(s.memory_bytes) },
      {
        key: "memory_limit_bytes",
        title: "Limit",
        num: true,
        raw: (s) => s.memory_limit_bytes,
        show: (s) => (s.memory_limit_bytes === null ? "none" : bytes(s.memory_limit_bytes)),
      },
      { key: "gpu_devices", title: "GPUs", raw: (s) => (s.gpu_devices || []).join(" ") },
    ];
    for (const k of volumeKeys()) {
      cols.push({
        key: "vol:" + k,
        title: "Volume " + k,
        num: true,
        raw: (s) => (s.volumes && k in s.volumes ? s.volumes[k] : null),
        show: (s) => bytes(s.volumes ? s.volumes[k] : null),
      });
    }
    return cols;
  }

  function visibleRows(cols) {
    const q = byId("servers-filter").value.trim().toLowerCase();
    const shown = data.servers.filter(
      (s) => !q || [s.user, s.server, s.image, s.profile, (s.gpu_devices || []).join(" ")].some((v) => String(v || "").toLowerCase().includes(q)),
    );
    const col = cols.find((c) => c.key === sortKey) || cols[0];
    return shown.sort((a, b) => {
      const x = col.raw(a);
      const y = col.raw(b);
      if (x === y) return 0;
      if (blank(x)) return 1;
      if (blank(y)) return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
  }

  const td = (text, num) => el("td", num ? { class: "text-end" } : {}, text);

  function renderHead(cols) {
    const head = byId("servers-head");
    head.replaceChildren();
    for (const c of cols) {
      const arrow = c.key === sortKey ? (sortDir > 0 ? " \u25b2" : " \u25bc") : "";
      const th = el("th", { scope: "col", role: "button", class: c.num ? "text-end" : "" }, c.title + arrow);
      th.dataset.key = c.key;
      th.addEventListener("click", () => {
        sortDir = sortKey === c.key ? -sortDir : 1;
        sortKey = c.key;
        render();
      });
      head.appendChild(th);
    }
  }

  function renderTotal(cols) {
    const t = data.totals;
    const label = td(`Total: ${t.servers} server${t.servers === 1 ? "" : "s"}`);
    label.colSpan = 5;
    const committed = td(
      `${t.memory_limit_bytes ? bytes(t.memory_limit_bytes) : "no limits"} committed, ` +
        `host ${t.host_memory_bytes ? bytes(t.host_memory_bytes) : "?"}`,
      true,
    );
    committed.id = "servers-committed";
    const vols = td(bytes(t.volume_bytes), true);
    vols.colSpan = Math.max(1, cols.length - 9);
    byId("servers-total").replaceChildren(label, td(t.cpu_percent.toFixed(1), true), td(bytes(t.memory_bytes), true), committed, td(String(t.gpu_devices)), vols);
  }

  function renderStopped() {
    byId("stopped-help").textContent = `Users without a running server whose volumes hold ${bytes(data.large_volume_bytes)} or more.`;
    const rows = data.stopped_with_large_volumes.map((u) => {
      const tr = el("tr");
      const vols = Object.entries(u.volumes).map(([k, v]) => `${k}: ${bytes(v)}`).join(", ");
      tr.append(td(u.user), td(vols), td(bytes(u.total_bytes), true));
      return tr;
    });
    byId("stopped-body").replaceChildren(...rows);
  }

  function render() {
    if (!data) return;
    const cols = columns();
    renderHead(cols);
    const rows = visibleRows(cols).map((s) => {
      const tr = el("tr", s.stale ? { class: "text-body-secondary" } : {});
      tr.dataset.user = s.user;
      tr.dataset.server = s.server;
      for (const c of cols) tr.appendChild(td(c.show ? c.show(s) : c.raw(s), c.num));
      return tr;
    });
    byId("servers-body").replaceChildren(...rows);
    byId("servers-empty").hidden = data.servers.length > 0;
    renderTotal(cols);
    renderStopped();
    const at = data.scanned_at ? new Date(data.scanned_at * 1000).toLocaleTimeString() : "not yet";
    byId("servers-updated").textContent = `Measured ${at}; refreshes every ${cfg.scan_interval} s`;
  }

  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    // a leading = + - @ would be a formula in a spreadsheet
    const safe = /^[=+\-@\t\r]/.test(s) ? "'" + s : s;
    return /[",\n]/.test(safe) ? '"' + safe.replace(/"/g, '""') + '"' : safe;
  }
  function csv() {
    const cols = columns();
    const lines = [cols.map((c) => csvCell(c.title)).join(",")];
    for (const s of visibleRows(cols)) lines.push(cols.map((c) => csvCell(c.raw(s))).join(","));
    return lines.join("\n") + "\n";
  }

  byId("servers-csv").addEventListener("click", () => {
    if (!data) return;
    const a = el("a", { download: "servers.csv" });
    a.href = URL.createObjectURL(new Blob([csv()], { type: "text/csv" }));
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
  byId("servers-filter").addEventListener("input", render);

  async function refresh() {
    try {
      const r = await api.request("GET", "usage/servers");
      if (r.ok) {
        data = r.data;
        render();
      } else {
        byId("servers-updated").textContent = `Could not refresh: ${errorText(r)}`;
      }
    } catch (e) {
      byId("servers-updated").textContent = "Could not refresh: " + e;
    }
  }
  window.jhextServersCsv = csv; // what the download would save, for scripts and tests
  refresh();
  setInterval(refresh, Math.max(2, Math.min(cfg.scan_interval, 30)) * 1000);
}
