// The operator's console. The admin token lives in this tab's sessionStorage and goes out
// only in the Authorization header, never in a URL. API data reaches the page only
// through textContent and attributes (dom.js), never as HTML.
import { ApiError, api, enc } from "./api.js";
import { $, el } from "./dom.js";

const TOKEN_KEY = "bitloot.admin_token";
const PAGE_SIZE = 20;
const STATUSES = ["created", "waiting", "confirming", "paid", "fulfilled", "expired", "failed", "underpaid"];
const FLAGS = ["paid_late", "overpaid", "paid_twice", "fulfillment_failed", "product_unavailable", "supplier_order_canceled", "price_guard", "price_approved", "email_failed", "refunded", "marked"];
// What each button asks before it runs, and the path it posts to.
const ACTIONS = {
  "retry-fulfillment": { ask: "Retry the fulfillment of order", path: (id) => `/api/admin/orders/${enc(id)}/retry-fulfillment` },
  "resend-email": { ask: "Send the completion email again for order", path: (id) => `/api/admin/orders/${enc(id)}/resend-email` },
  fulfill: { ask: "Resolve by fulfilling order", path: (id) => `/api/admin/orders/${enc(id)}/resolve`, resolve: true },
  refund: { ask: "Resolve by refunding order", path: (id) => `/api/admin/orders/${enc(id)}/resolve`, resolve: true },
};

const state = { offset: 0, total: 0, filters: {}, orderId: null };

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function admin(method, path, body) {
  try {
    return await api(method, path, { token: token(), body });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut("That admin token is wrong. Sign in again.");
    }
    throw error;
  }
}

async function adminList(path) {
  // The list and its X-Total-Count header (api() reads only the body).
  const response = await fetch(path, { headers: { Accept: "application/json", Authorization: `Bearer ${token()}` }, cache: "no-store" });
  const data = await response.json();
  if (!response.ok) {
    if (response.status === 401) signOut("That admin token is wrong. Sign in again.");
    throw new ApiError(response.status, data.error.code, data.error.message);
  }
  return { items: data, total: Number(response.headers.get("x-total-count") || data.length) };
}

function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = !text;
}

function announce(text) {
  $("announcer").textContent = text;
}

function showError(error) {
  say(error instanceof ApiError ? `${error.message} (${error.code})` : String(error), "error");
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  say(why || "", why ? "error" : "info");
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const entered = $("token").value.trim();
  if (!entered) return;
  sessionStorage.setItem(TOKEN_KEY, entered);
  $("token").value = "";
  try {
    await admin("GET", "/api/admin/health");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) showError(error);
    return;
  }
  say("");
  await openConsole();
}

async function openConsole() {
  $("sign-in").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = false;
  await Promise.all([loadHealth(), loadWaiting(), loadOrders(), loadDead(), loadCatalogue()]);
}

// --- health -------------------------------------------------------------------------

function counts(target, values) {
  target.replaceChildren(...Object.entries(values).flatMap(([name, n]) => [el("dt", {}, name), el("dd", {}, n)]));
}

async function loadHealth() {
  const health = await admin("GET", "/api/admin/health");
  counts($("health-orders"), health.orders);
  counts($("health-jobs"), health.jobs);
  const errors = Object.entries(health.last_errors);
  $("health-errors").replaceChildren(
    ...(errors.length
      ? errors.map(([kind, e]) => el("li", { className: "wrap" }, el("strong", {}, `${kind}: `), `${e.error} (order ${e.order_id}, ${e.at})`))
      : [el("li", { className: "muted" }, "None.")]),
  );
}

// --- waiting for keys ---------------------------------------------------------------

const utc = (moment) => moment.replace("T", " ").replace("Z", "");

async function loadWaiting() {
  const waits = await admin("GET", "/api/admin/waiting");
  $("waiting-empty").hidden = waits.length > 0;
  $("waiting-body").replaceChildren(
    ...waits.map((w) =>
      el(
        "tr",
        { dataset: { testid: "waiting-row" } },
        el("td", {}, el("button", { type: "button", className: "link-button", dataset: { orderId: w.order_id, testid: "open-waiting" } }, w.order_id)),
        el("td", {}, utc(w.since)),
        el("td", { className: "wrap" }, w.supplier_orders.join(", ") || "—"),
        el("td", {}, w.preorder ? (w.release_at ? utc(w.release_at) : "not given") : "—"),
        el("td", {}, utc(w.next_poll)),
      ),
    ),
  );
}

// --- orders -------------------------------------------------------------------------

function query() {
  const params = new URLSearchParams({ ...state.filters, limit: PAGE_SIZE, offset: state.offset });
  for (const [name, value] of [...params]) if (!value) params.delete(name);
  return params.toString();
}

async function loadOrders() {
  const { items, total } = await adminList(`/api/admin/orders?${query()}`);
  state.total = total;
  $("orders-body").replaceChildren(
    ...(items.length
      ? items.map((order) =>
          el(
            "tr",
            { dataset: { testid: "order-row" } },
            el("td", {}, el("button", { type: "button", className: "link-button", dataset: { orderId: order.id, testid: "open-order" } }, order.id)),
            el("td", {}, order.status),
            el("td", {}, order.flags.join(", ") || "—"),
            el("td", { className: "wrap" }, order.email),
            el("td", {}, `${order.total} ${order.currency.toUpperCase()}`),
            el("td", {}, order.created_at.replace("T", " ").replace("Z", "")),
          ),
        )
      : [el("tr", {}, el("td", { colSpan: 6, className: "muted" }, "No orders match."))]),
  );
  const first = total ? state.offset + 1 : 0;
  const last = Math.min(state.offset + PAGE_SIZE, total);
  $("page-info").textContent = `${first} to ${last} of ${total}`;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE_SIZE >= total;
  announce(`${total} orders match.`);
}

function applyFilters(event) {
  event.preventDefault();
  const form = new FormData($("filters"));
  state.filters = Object.fromEntries([...form].map(([name, value]) => [name, String(value).trim()]));
  state.offset = 0;
  loadOrders().catch(showError);
}

function page(step) {
  state.offset = Math.max(0, state.offset + step * PAGE_SIZE);
  loadOrders().catch(showError);
}

// --- one order ----------------------------------------------------------------------

function table(title, testid, columns, rows) {
  const body = rows.length
    ? rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", { className: "wrap" }, cell ?? "—"))))
    : [el("tr", {}, el("td", { colSpan: columns.length, className: "muted" }, "None."))];
  return el(
    "section",
    { className: "table-wrap" },
    el("h3", {}, title),
    el("table", { className: "grid", dataset: { testid } }, el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { scope: "col" }, c)))), el("tbody", {}, ...body)),
  );
}

async function openOrder(orderId) {
  const order = await admin("GET", `/api/admin/orders/${enc(orderId)}`);
  state.orderId = order.id;
  $("order").hidden = false;
  $("order-title").textContent = `Order ${order.id}`;
  $("order-summary").textContent = `${order.status} · ${order.flags.join(", ") || "no flags"} · ${order.email} · ${order.total} ${order.currency.toUpperCase()}`;
  $("order-tables").replaceChildren(
    table("Items", "items", ["Product", "Name", "Quantity", "Unit price", "Delivered"], order.items.map((i) => [i.product_id, i.name, i.quantity, i.unit_price, i.delivered ? "yes" : "no"])),
    table("Payments", "payments", ["Payment", "Provider", "Status", "Amount", "Paid", "Address"], order.payments.map((p) => [p.id, p.provider, `${p.status} (${p.provider_status})`, `${p.pay_amount} ${p.pay_currency}`, p.actually_paid, p.pay_address])),
    table("Audit trail", "audit", ["At", "Action", "Detail", "By"], order.audit.map((a) => [a.at, a.action, a.detail, a.actor])),
    table("Webhook log", "webhooks", ["Received", "Outcome", "Why", "Signature", "Provider status"], order.webhooks.map((w) => [w.received_at, w.outcome, w.reason, w.signature_valid ? "valid" : "invalid", w.provider_status])),
    table("Jobs", "jobs", ["Job", "State", "Attempts", "Runs at", "Last error"], order.jobs.map((j) => [j.key, j.state, j.attempts, j.run_at, j.last_error])),
    table("Reveals", "reveals", ["Item", "At", "Expires"], order.reveals.map((r) => [r.item_id, r.at, r.expires_at])),
  );
  $("order-title").focus();
}

async function act(action) {
  const spec = ACTIONS[action];
  const orderId = state.orderId;
  if (!spec || !orderId || !window.confirm(`${spec.ask} ${orderId}?`)) return;
  const note = $("note").value.trim();
  try {
    const order = await admin("POST", spec.path(orderId), spec.resolve ? { action, note } : undefined);
    say(`Done: order ${order.id} is ${order.status}.`, "info");
    await Promise.all([openOrder(orderId), loadOrders(), loadHealth(), loadWaiting(), loadDead()]);
  } catch (error) {
    showError(error);
  }
}

// --- dead letters -------------------------------------------------------------------

async function loadDead() {
  const jobs = await admin("GET", "/api/admin/jobs?state=dead");
  $("dead-empty").hidden = jobs.length > 0;
  $("retry-all").disabled = jobs.length === 0;
  $("dead-body").replaceChildren(
    ...jobs.map((job) =>
      el(
        "tr",
        { dataset: { testid: "dead-row" } },
        el("td", { className: "wrap" }, job.key),
        el("td", {}, job.attempts),
        el("td", { className: "wrap" }, job.last_error || "—"),
        el("td", {}, el("button", { type: "button", dataset: { jobKey: job.key, testid: "retry-job" } }, "Retry", el("span", { className: "visually-hidden" }, ` ${job.key}`))),
      ),
    ),
  );
  return jobs;
}

async function retryJob(key) {
  if (!window.confirm(`Retry the dead job ${key}?`)) return;
  try {
    await admin("POST", `/api/admin/jobs/${enc(key)}/retry`);
    say(`Job ${key} is queued again.`, "info");
  } catch (error) {
    showError(error);
  }
  await Promise.all([loadDead(), loadOrders(), loadHealth()]);
}

async function retryAll() {
  const jobs = await loadDead();
  if (!jobs.length || !window.confirm(`Retry all ${jobs.length} dead jobs?`)) return;
  const progress = $("retry-progress");
  progress.max = jobs.length;
  progress.value = 0;
  progress.hidden = false;
  let failed = 0;
  for (const job of jobs) {
    try {
      await admin("POST", `/api/admin/jobs/${enc(job.key)}/retry`);
    } catch {
      failed += 1;
    }
    progress.value += 1;
    announce(`Retried ${progress.value} of ${jobs.length}.`);
  }
  say(failed ? `${jobs.length - failed} of ${jobs.length} dead jobs queued again; ${failed} could not be.` : `All ${jobs.length} dead jobs are queued again.`, failed ? "error" : "info");
  await Promise.all([loadDead(), loadOrders(), loadHealth()]);
}

// --- the catalogue ------------------------------------------------------------------

async function loadCatalogue() {
  const products = await admin("GET", "/api/admin/products");
  $("catalogue-body").replaceChildren(
    ...products.map((p) =>
      el(
        "tr",
        { dataset: { testid: "product-row" } },
        el("td", {}, p.id),
        el("td", {}, p.name),
        el("td", {}, `${p.price} ${p.currency.toUpperCase()}`),
        el("td", {}, p.source === "kinguin" ? `Kinguin ${p.supplier_ref}` : "custom key pool"),
        el("td", { dataset: { testid: `stock-${p.id}` } }, p.stock ?? "Kinguin's"),
      ),
    ),
  );
  const pools = products.filter((p) => p.source === "custom");
  $("k-product").replaceChildren(...pools.map((p) => el("option", { value: p.id }, `${p.name} (${p.id})`)));
}

async function saveProduct(event) {
  event.preventDefault();
  const form = Object.fromEntries([...new FormData($("product-form"))].map(([k, v]) => [k, String(v).trim()]));
  const { id, ...body } = form;
  if (body.source !== "kinguin") delete body.supplier_ref;
  try {
    const saved = await admin("PUT", `/api/admin/products/${enc(id)}`, body);
    say(`Saved ${saved.name} (${saved.id}).`, "info");
    await loadCatalogue();
  } catch (error) {
    showError(error);
  }
}

async function addKeys(event) {
  event.preventDefault();
  const file = $("k-file").files[0];
  const text = `${$("k-paste").value}\n${file ? await file.text() : ""}`;
  const keys = text.split(/\r?\n/).map((k) => k.trim()).filter(Boolean);
  const product = $("k-product").value;
  if (!keys.length || !product) return say("Paste keys or choose a file first.", "error");
  try {
    const result = await admin("POST", `/api/admin/products/${enc(product)}/keys`, { keys });
    say(`Added ${result.added} keys to ${product}; ${result.duplicates} duplicates not added.`, "info");
    $("k-paste").value = "";
    $("k-file").value = "";
    await loadCatalogue();
  } catch (error) {
    showError(error);
  }
}

async function importProducts(event) {
  event.preventDefault();
  const file = $("i-file").files[0];
  if (!file) return say("Choose a JSON file first.", "error");
  let data;
  try {
    data = JSON.parse(await file.text());
  } catch {
    return say("That file is not JSON.", "error");
  }
  const products = Array.isArray(data) ? data : data.products;
  try {
    const result = await admin("POST", "/api/admin/products/import", { products });
    say(`Imported ${result.saved} products.`, "info");
    await loadCatalogue();
  } catch (error) {
    showError(error);
  }
}

// --- wiring -------------------------------------------------------------------------

async function start() {
  for (const status of STATUSES) $("f-status").append(el("option", { value: status }, status));
  for (const flag of FLAGS) $("f-flag").append(el("option", { value: flag }, flag));
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("filters").addEventListener("submit", applyFilters);
  $("prev").addEventListener("click", () => page(-1));
  $("next").addEventListener("click", () => page(1));
  $("orders-body").addEventListener("click", (event) => {
    const button = event.target.closest("[data-order-id]");
    if (button) openOrder(button.dataset.orderId).catch(showError);
  });
  $("actions").addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (button) act(button.dataset.action);
  });
  $("waiting-body").addEventListener("click", (event) => {
    const button = event.target.closest("[data-order-id]");
    if (button) openOrder(button.dataset.orderId).catch(showError);
  });
  $("dead-body").addEventListener("click", (event) => {
    const button = event.target.closest("[data-job-key]");
    if (button) retryJob(button.dataset.jobKey);
  });
  $("retry-all").addEventListener("click", () => retryAll().catch(showError));
  $("product-form").addEventListener("submit", saveProduct);
  $("keys-form").addEventListener("submit", addKeys);
  $("import-form").addEventListener("submit", importProducts);
  if (token()) openConsole().catch(showError);
  else signOut();
}

start().catch(showError);
