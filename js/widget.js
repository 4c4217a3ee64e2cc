// nbagent live view: one ESM module, no bundler, no dependencies.
//
// State comes from three traits (`blocks`, `status`, `media`) and custom messages: "delta"
// carries streamed text every 33–50 ms, "patch" the blocks that changed (a card's new state,
// the streaming text rendered), "ack" the answer to a click. `synced_seq` and a patch's
// `seq` say which delta the blocks already contain.
// The kernel decides what a card shows and renders it: each card arrives as the same HTML
// the saved notebook shows (`nbagent.render.as_html`), so the view does not jump when the
// run ends. That HTML is parsed inert, and only an allowlist of tags and attributes is
// kept; this file adds the buttons and makes no decisions. Streamed text is shown as text.

/**
 * @typedef {{kind: "text", text: string, html: string, tail?: string}} TextBlock
 * @typedef {{kind: "tool", id: string, name: string, status: string, label: string,
 *   awaits_decision: boolean, trust_label: string | null, html: string,
 *   arguments: Array<[string, string, string]>}} ToolBlock
 * @typedef {{kind: "budget", id: string, label: string, decision: string | null,
 *   awaits_decision: boolean, buttons: Array<[string, string]>}} BudgetBlock
 * @typedef {TextBlock | ToolBlock | BudgetBlock} Block
 * @typedef {{notices: string[], notice_tones?: string[], label: string, details: string,
 *   elapsed_s: number, finished: boolean, state?: string, header_html?: string}} Status
 * @typedef {{type: "delta", seq: number, block: number, text: string}
 *   | {type: "patch", seq: number, count: number, blocks: Array<[number, Block]>}
 *   | {type: "ack", request: number, ok: boolean, error?: string}} Incoming
 * @typedef {{get(name: string): any, on(event: string, cb: Function): void,
 *   off(event: string, cb: Function): void, send(content: object): void}} Model
 */

const REQUEST_TIMEOUT_MS = 10000;
const SAFE_URL = /^(https?:|mailto:|#)/i;
// Tool images: only PNG/JPEG, only plain base64 (checked in the kernel too).
const IMAGE_MIMES = new Set(["image/png", "image/jpeg"]);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// What the kernel's Markdown renderer writes; anything else is dropped with its content.
const TEXT_TAGS = new Set([
  "P", "BR", "HR", "STRONG", "EM", "DEL", "CODE", "PRE", "A", "UL", "OL", "LI", "BLOCKQUOTE",
  "H1", "H2", "H3", "H4", "H5", "H6", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD",
]);
// What the kernel's card renderer writes, and the attributes it uses.
const CARD_TAGS = new Set(["DIV", "SPAN", "CODE", "PRE", "B", "I", "DETAILS", "SUMMARY"]);
const CARD_ATTRIBUTES = new Set(["class", "style", "title", "data-status", "data-ref", "open"]);
// A style that could load anything or escape its declaration is dropped whole.
const UNSAFE_STYLE = /url\s*\(|image-set|expression|@import|\\|javascript:|[<>]/i;

const CSS = `
.nbagent-view { font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-content-font-size1, 14px);
  color: var(--jp-content-font-color1, #222); border-left: 3px solid var(--jp-brand-color1, #1976d2);
  padding: 2px 0 0 10px; margin: 2px 0; line-height: 1.5; }
.nbagent-view .nb-header code { background: var(--jp-layout-color2, #eee); padding: 0 3px; border-radius: 3px;
  font-family: var(--jp-code-font-family, monospace); font-size: 90%; }
.nbagent-view .nb-text p { margin: 4px 0; white-space: pre-wrap; }
.nbagent-view .nb-text ul, .nbagent-view .nb-text ol { margin: 4px 0; }
.nbagent-view .nb-text code { background: var(--jp-layout-color2, #f5f5f5); padding: 0 2px; }
.nbagent-view .nb-text pre { background: var(--jp-layout-color2, #f5f5f5); padding: 4px 6px; white-space: pre-wrap;
  font-family: var(--jp-code-font-family, monospace); }
.nbagent-view .nb-text pre code { padding: 0; background: none; }
.nbagent-view .nb-text td, .nbagent-view .nb-text th { border: 1px solid var(--jp-border-color2, #ddd); padding: 1px 6px; }
.nbagent-view .nb-tail { white-space: pre-wrap; }
.nbagent-view .nb-card { outline: none; border-radius: 6px; }
.nbagent-view .nb-card:focus-visible, .nbagent-view .nb-card:focus-within {
  box-shadow: 0 0 0 2px var(--jp-brand-color2, #64b5f6); }
.nbagent-view .nb-card > .nbagent-tool { margin: 8px 0 !important; }
.nbagent-view .nb-card.nb-asks > .nbagent-tool { margin-bottom: 0 !important;
  border-bottom-left-radius: 0 !important; border-bottom-right-radius: 0 !important; }
.nbagent-view .nb-actions { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; padding: 6px 10px;
  border: 1px solid var(--jp-border-color2, rgba(128,128,128,0.35)); border-top: none;
  border-radius: 0 0 6px 6px; background: var(--jp-layout-color1, #fff); margin-bottom: 8px; }
.nbagent-view button { font: inherit; font-size: var(--jp-ui-font-size1, 13px); cursor: pointer; border-radius: 4px;
  padding: 3px 12px; border: 1px solid var(--jp-border-color1, #bdbdbd); background: var(--jp-layout-color2, #eee);
  color: var(--jp-ui-font-color1, #212121); }
.nbagent-view button:hover:not(:disabled) { background: var(--jp-layout-color3, #ddd); }
.nbagent-view button:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
.nbagent-view button:disabled { opacity: 0.55; cursor: default; }
.nbagent-view button.nb-primary { background: var(--jp-brand-color1, #1976d2); border-color: var(--jp-brand-color1, #1976d2);
  color: var(--jp-ui-inverse-font-color1, #fff); font-weight: 600; }
.nbagent-view button.nb-primary:hover:not(:disabled) { background: var(--jp-brand-color0, #0d47a1); }
.nbagent-view button.nb-primary.nb-danger { background: var(--jp-error-color1, #c62828); border-color: var(--jp-error-color1, #c62828); }
.nbagent-view button.nb-primary.nb-danger:hover:not(:disabled) { background: var(--jp-error-color0, #b71c1c); }
.nbagent-view button.nb-reject:hover:not(:disabled) { color: var(--jp-error-color1, #c62828);
  border-color: var(--jp-error-color1, #c62828); }
.nbagent-view .nb-hint { color: var(--jp-ui-font-color2, #616161); font-size: var(--jp-ui-font-size0, 11px); margin-left: auto; }
.nbagent-view .nb-reason { flex: 1 1 220px; min-width: 160px; font: inherit; padding: 3px 6px; border-radius: 4px;
  border: 1px solid var(--jp-border-color1, #bdbdbd); background: var(--jp-input-background, var(--jp-layout-color0, #fff));
  color: var(--jp-ui-font-color1, #212121); }
.nbagent-view .nb-menu { display: inline-flex; gap: 6px; }
.nbagent-view .nb-status { position: relative; z-index: 2; display: flex; gap: 8px; align-items: center;
  flex-wrap: wrap; padding: 4px 0; background: var(--jp-layout-color0, #fff);
  color: var(--jp-ui-font-color1, #212121); font-size: var(--jp-ui-font-size1, 13px); }
.nbagent-view .nb-status.nb-floating { box-shadow: 0 -1px 0 var(--jp-border-color2, #e0e0e0); }
.nbagent-view .nb-status .nb-details { color: var(--jp-ui-font-color2, #616161); }
.nbagent-view .nb-status button { padding: 1px 10px; }
.nbagent-view .nb-spinner { width: 10px; height: 10px; border-radius: 50%; flex: none;
  border: 2px solid var(--jp-border-color1, #bdbdbd); border-top-color: var(--jp-brand-color1, #1976d2);
  animation: nb-spin 0.9s linear infinite; }
.nbagent-view .nb-spinner[hidden] { display: none; }
@keyframes nb-spin { to { transform: rotate(360deg); } }
@media (prefers-reduced-motion: reduce) { .nbagent-view .nb-spinner { animation: none; } }
.nbagent-view .nb-notice { border-left: 3px solid var(--jp-error-color1, #c62828); padding: 2px 8px; margin: 6px 0;
  color: var(--jp-error-color1, #c62828); font-weight: 600; }
.nbagent-view .nb-notice.nb-info { border-left-color: var(--jp-border-color1, #bdbdbd);
  color: var(--jp-content-font-color1, #222); font-weight: normal; }
.nbagent-view .nbagent-image { display: block; }
.nbagent-view .nbagent-image img { display: block; max-width: 100%; margin: 4px 0; }
`;

/**
 * Make an element with an optional class and text.
 * @param {string} tag
 * @param {string} [cls]
 * @param {string} [text]
 * @returns {HTMLElement}
 */
function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Copy the allowed part of the kernel's Markdown HTML: known tags, safe links, nothing else.
 * Parsing into a <template> is inert (no script runs, no image loads).
 * @param {Node} from
 * @param {Node} into
 */
function copyText(from, into) {
  for (const child of from.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) {
      into.appendChild(document.createTextNode(child.textContent ?? ""));
    } else if (child.nodeType === Node.ELEMENT_NODE && TEXT_TAGS.has(/** @type {Element} */ (child).tagName)) {
      const element = /** @type {Element} */ (child);
      const node = document.createElement(element.tagName.toLowerCase());
      const href = element.getAttribute("href");
      if (element.tagName === "A" && href && SAFE_URL.test(href.trim())) {
        node.setAttribute("href", href.trim());
        node.setAttribute("rel", "noopener noreferrer nofollow");
        node.setAttribute("target", "_blank");
      }
      const start = element.getAttribute("start");
      if (element.tagName === "OL" && start && /^\d+$/.test(start)) node.setAttribute("start", start);
      copyText(element, node);
      into.appendChild(node);
    }
  }
}

/**
 * Copy the allowed part of the kernel's card HTML: its tags and attributes, styles that
 * cannot load anything. Anything else is dropped with its content.
 * @param {Node} from
 * @param {Node} into
 */
function copyCard(from, into) {
  for (const child of from.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) {
      into.appendChild(document.createTextNode(child.textContent ?? ""));
    } else if (child.nodeType === Node.ELEMENT_NODE && CARD_TAGS.has(/** @type {Element} */ (child).tagName)) {
      const element = /** @type {Element} */ (child);
      const node = document.createElement(element.tagName.toLowerCase());
      for (const { name, value } of element.attributes) {
        if (!CARD_ATTRIBUTES.has(name)) continue;
        if (name === "style" && UNSAFE_STYLE.test(value)) continue;
        node.setAttribute(name, value);
      }
      copyCard(element, node);
      into.appendChild(node);
    }
  }
}

/**
 * @param {string} html
 * @param {(from: Node, into: Node) => void} copy
 * @param {HTMLElement} into
 * @returns {HTMLElement}
 */
function parsed(html, copy, into) {
  const template = document.createElement("template");
  template.innerHTML = html;
  copy(template.content, into);
  return into;
}

/**
 * A text block: the kernel's safe HTML, and text streamed since as plain text.
 * @param {string} html
 * @param {string} tail
 * @returns {HTMLElement}
 */
function textNode(html, tail) {
  const out = parsed(html, copyText, h("div", "nb-text"));
  out.append(h("span", "nb-tail", tail));
  return out;
}

/**
 * @param {{model: Model, el: HTMLElement}} context
 * @returns {() => void} cleanup
 */
function render({ model, el }) {
  const root = h("div", "nbagent-view");
  const style = h("style", "", CSS);
  const statusLine = h("div", "nb-status");
  const spinner = h("span", "nb-spinner");
  const statusText = h("span", "nb-state");
  const statusDetails = h("span", "nb-details");
  const stop = h("button", "nb-stop", "Stop");
  stop.title = "Stop the run (the notebook's interrupt button does the same)";
  const header = h("div", "nb-header");
  const body = h("div", "nb-body");
  const notices = h("div", "nb-notices");
  statusLine.append(spinner, statusText, statusDetails, stop);
  root.append(style, header, body, notices, statusLine);
  el.append(root);

  /** The blocks as the page holds them (the trait, then patches). @type {Block[]} */
  let blocks = [];
  /** The node shown for each block. @type {HTMLElement[]} */
  let nodes = [];
  /** Text streamed into each block since the block's last update. @type {string[]} */
  let tails = [];
  let lastSeq = 0;
  let nextRequest = 1;
  let receivedAt = Date.now();
  /** @type {Map<number, {resolve: Function, reject: Function, timer: number}>} */
  const waiting = new Map();
  /** Cards whose decision was sent. @type {Set<string>} */
  const deciding = new Set();
  /** Cards whose reject reason field is open, with what was typed. @type {Map<string, string>} */
  const reasons = new Map();
  /** Cards whose "Always allow" choices are open. @type {Set<string>} */
  const alwaysOpen = new Set();
  /** @type {Set<number>} */
  const dirty = new Set();
  /** Image nodes by media key, kept across re-renders so each image decodes once.
   * @type {Map<string, HTMLImageElement>} */
  const images = new Map();
  /** Folded sections the user opened or closed, by call id and section class.
   * @type {Map<string, boolean>} */
  const folds = new Map();
  let frame = 0;

  /**
   * Send a request and wait for the kernel's ack (bounded by a timeout).
   * @param {object} content
   * @returns {Promise<void>}
   */
  function request(content) {
    const id = nextRequest++;
    return new Promise((resolve, reject) => {
      const timer = window.setTimeout(() => {
        waiting.delete(id);
        reject(new Error("the kernel did not answer (is it busy or gone?)"));
      }, REQUEST_TIMEOUT_MS);
      waiting.set(id, { resolve, reject, timer });
      model.send({ ...content, request: id });
    });
  }

  /** @param {string} message */
  function showProblem(message) {
    notices.append(h("div", "nb-notice", message));
  }

  /**
   * Fill a card's image placeholders from `media` (checked PNG/JPEG base64 only).
   * @param {HTMLElement} node
   */
  function fillImages(node) {
    /** @type {Record<string, {mime: string, data: string}>} */
    const media = model.get("media") ?? {};
    for (const slot of node.querySelectorAll(".nbagent-image")) {
      const ref = slot.getAttribute("data-ref") ?? "";
      const entry = media[ref];
      if (!entry || !IMAGE_MIMES.has(entry.mime) || !BASE64.test(entry.data)) continue;
      let img = images.get(ref);
      if (!img) {
        img = /** @type {HTMLImageElement} */ (h("img"));
        img.alt = slot.textContent ?? "";
        img.src = `data:${entry.mime};base64,${entry.data}`;
        images.set(ref, img);
      }
      slot.replaceChildren(img);
    }
  }

  /**
   * Keep folded sections as the user left them, across updates of the card.
   * @param {HTMLElement} node
   * @param {string} id
   */
  function keepFolds(node, id) {
    for (const details of node.querySelectorAll("details")) {
      const d = /** @type {HTMLDetailsElement} */ (details);
      const key = `${id} ${d.className}`;
      const kernelOpen = d.open;
      const chosen = folds.get(key);
      if (chosen !== undefined) d.open = chosen;
      d.addEventListener("toggle", () => {
        if (d.open === kernelOpen) folds.delete(key);
        else folds.set(key, d.open);
      });
    }
  }

  /**
   * @param {ToolBlock} card
   * @returns {HTMLElement}
   */
  function cardNode(card) {
    const node = h("div", "nb-card");
    node.dataset.callId = card.id;
    parsed(card.html ?? "", copyCard, node);
    fillImages(node);
    keepFolds(node, card.id);
    if (card.awaits_decision) {
      node.classList.add("nb-asks");
      node.tabIndex = 0;
      // JupyterLab leaves keys alone inside this element: Enter and Esc are the card's.
      node.setAttribute("data-lm-suppress-shortcuts", "true");
      node.append(actionsNode(card, node));
      node.addEventListener("keydown", (event) => onCardKey(event, card, node));
    }
    return node;
  }

  /**
   * A run paused at its budget: what was reached, then the kernel's buttons (continue with
   * another budget / stop, the first one primary) or how it was decided.
   * @param {BudgetBlock} card
   * @returns {HTMLElement}
   */
  function budgetNode(card) {
    const node = h("div", "nb-card nb-budget");
    node.dataset.callId = card.id;
    const box = h("div", "nbagent-tool");
    box.dataset.status = card.awaits_decision ? "pending" : "ok";
    box.style.cssText = "border:1px solid rgba(128,128,128,0.35);border-left:4px solid #bf8700;"
      + "border-radius:6px;padding:6px 10px;margin:8px 0";
    box.append(h("b", "", card.label), card.decision ? ` — ${card.decision}` : "");
    node.append(box);
    if (card.awaits_decision) {
      node.classList.add("nb-asks");
      const row = h("div", "nb-actions");
      card.buttons.forEach(([label, action], i) => {
        const b = /** @type {HTMLButtonElement} */ (h("button", i === 0 ? `nb-${action} nb-primary` : `nb-${action}`, label));
        b.disabled = deciding.has(card.id);
        b.addEventListener("click", () => decide(card, action, node));
        row.append(b);
      });
      node.append(row);
    }
    return node;
  }

  /**
   * Enter approves, Esc opens the reject reason (and closes it again), when the card has
   * the focus (not a field or button inside it, which handle their own keys).
   * @param {KeyboardEvent} event
   * @param {ToolBlock} card
   * @param {HTMLElement} node
   */
  function onCardKey(event, card, node) {
    if (event.target !== node || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      event.stopPropagation();
      decide(card, "approve", node);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      openReason(card);
    }
  }

  /**
   * Send a decision; the card's buttons stay disabled until the kernel's next update.
   * @param {{id: string}} card
   * @param {string} action
   * @param {HTMLElement} node
   * @param {string} [reason]
   */
  function decide(card, action, node, reason) {
    if (deciding.has(card.id)) return;
    deciding.add(card.id);
    for (const b of node.querySelectorAll("button, input")) /** @type {HTMLButtonElement} */ (b).disabled = true;
    request({ type: "decide", id: card.id, action, ...(reason ? { reason } : {}) }).catch((err) => {
      deciding.delete(card.id);
      for (const b of node.querySelectorAll("button, input")) /** @type {HTMLButtonElement} */ (b).disabled = false;
      showProblem(`${action} failed: ${err.message}`);
    });
  }

  /** @param {ToolBlock} card */
  function openReason(card) {
    if (reasons.has(card.id)) reasons.delete(card.id);
    else reasons.set(card.id, "");
    alwaysOpen.delete(card.id);
    rerenderCard(card.id, true);
  }

  /**
   * The row under a card that waits: Approve (primary), Reject (asks why), Always allow
   * (this tool, or these arguments, for the session), and Trust when the kernel offers it.
   * @param {ToolBlock} card
   * @param {HTMLElement} node
   * @returns {HTMLElement}
   */
  function actionsNode(card, node) {
    const row = h("div", "nb-actions");
    const busy = deciding.has(card.id);
    /**
     * @param {string} label
     * @param {string} cls
     * @param {() => void} onClick
     */
    const button = (label, cls, onClick) => {
      const b = /** @type {HTMLButtonElement} */ (h("button", cls, label));
      b.disabled = busy;
      b.addEventListener("click", onClick);
      row.append(b);
      return b;
    };
    if (reasons.has(card.id)) {
      const field = /** @type {HTMLInputElement} */ (h("input", "nb-reason"));
      field.placeholder = "Why not? The model reads this (optional)";
      field.setAttribute("aria-label", "Reason for rejecting");
      field.maxLength = 2000;
      field.value = reasons.get(card.id) ?? "";
      field.disabled = busy;
      field.addEventListener("input", () => reasons.set(card.id, field.value));
      field.addEventListener("keydown", (event) => {
        event.stopPropagation(); // typing here is not a notebook shortcut
        if (event.key === "Enter") decide(card, "reject", node, field.value.trim());
        else if (event.key === "Escape") openReason(card);
      });
      row.append(field);
      button("Reject", "nb-primary nb-danger", () => decide(card, "reject", node, field.value.trim()));
      button("Cancel", "nb-cancel", () => openReason(card));
      return row;
    }
    button("Approve", "nb-approve nb-primary", () => decide(card, "approve", node));
    button("Reject", "nb-reject", () => openReason(card));
    if (alwaysOpen.has(card.id)) {
      const menu = h("span", "nb-menu");
      row.append(menu);
      for (const [label, action, title] of [
        [`Always allow ${card.name}`, "always", "every call of this tool, for this session"],
        ["Allow these arguments", "always_args", "calls of this tool with exactly these arguments, for this session"],
      ]) {
        const b = /** @type {HTMLButtonElement} */ (h("button", `nb-${action.replace("_", "-")}`, label));
        b.title = title;
        b.disabled = busy;
        b.addEventListener("click", () => decide(card, action, node));
        menu.append(b);
      }
    } else {
      button("Always allow…", "nb-always", () => {
        alwaysOpen.add(card.id);
        rerenderCard(card.id, true);
      });
    }
    if (card.trust_label) button(card.trust_label, "nb-trust", () => decide(card, "trust", node));
    row.append(h("span", "nb-hint", "Enter approves · Esc rejects"));
    return row;
  }

  /**
   * Show block `i` again from `blocks[i]`.
   * @param {number} i
   */
  function renderBlock(i) {
    const block = blocks[i];
    /** @type {HTMLElement} */
    let node;
    if (!block) node = h("div");
    else if (block.kind === "text") {
      tails[i] = block.tail ?? ""; // text the kernel has not rendered yet
      node = textNode(block.html ?? "", tails[i]);
    } else if (block.kind === "budget") node = budgetNode(block);
    else node = cardNode(block);
    const old = nodes[i];
    if (old && old.parentNode === body) old.replaceWith(node);
    else body.append(node);
    nodes[i] = node;
  }

  /**
   * @param {string} id
   * @param {boolean} [focusField]
   */
  function rerenderCard(id, focusField) {
    const i = blocks.findIndex((b) => b && b.kind === "tool" && b.id === id);
    if (i < 0) return;
    renderBlock(i);
    const field = focusField ? nodes[i].querySelector(".nb-reason, .nb-menu button, .nb-approve") : null;
    if (field) /** @type {HTMLElement} */ (field).focus();
  }

  function renderBlocks() {
    blocks = [...(model.get("blocks") ?? [])];
    body.replaceChildren();
    nodes = [];
    tails = [];
    blocks.forEach((_, i) => renderBlock(i));
    lastSeq = model.get("synced_seq") ?? 0; // the trait holds every delta up to `synced_seq`
    forgetDecided();
  }

  /** Decisions the kernel has taken in: their cards no longer wait. */
  function forgetDecided() {
    for (const id of [...deciding, ...reasons.keys(), ...alwaysOpen]) {
      const card = blocks.find((b) => b && b.kind !== "text" && b.id === id);
      if (!card || !(/** @type {ToolBlock} */ (card)).awaits_decision) {
        deciding.delete(id);
        reasons.delete(id);
        alwaysOpen.delete(id);
      }
    }
  }

  function flushText() {
    frame = 0;
    for (const i of dirty) {
      let node = nodes[i];
      if (!node) {
        blocks[i] = { kind: "text", text: "", html: "" };
        node = textNode("", "");
        body.append(node);
        nodes[i] = node;
      }
      const tail = node.querySelector(".nb-tail");
      if (tail) tail.textContent = tails[i] ?? "";
    }
    dirty.clear();
  }

  /** @param {Incoming} msg */
  function onMessage(msg) {
    if (msg.type === "delta") {
      if (msg.seq !== lastSeq + 1) return; // already in the blocks, or a gap the next patch fills
      lastSeq = msg.seq;
      if (msg.block > blocks.length) return;
      if (msg.block === blocks.length) blocks.push({ kind: "text", text: "", html: "" });
      tails[msg.block] = (tails[msg.block] ?? "") + msg.text;
      dirty.add(msg.block);
      if (!frame) frame = window.requestAnimationFrame(flushText);
    } else if (msg.type === "patch") {
      for (const [i, block] of msg.blocks) {
        blocks[i] = block;
        renderBlock(i);
      }
      lastSeq = msg.seq;
      forgetDecided();
    } else if (msg.type === "ack") {
      const entry = waiting.get(msg.request);
      if (!entry) return;
      waiting.delete(msg.request);
      window.clearTimeout(entry.timer);
      if (msg.ok) entry.resolve();
      else entry.reject(new Error(msg.error ?? "refused"));
    }
  }

  function renderStatus() {
    /** @type {Status} */
    const s = model.get("status") ?? {};
    receivedAt = Date.now();
    if (s.header_html !== header.dataset.html) {
      header.dataset.html = s.header_html ?? "";
      header.replaceChildren();
      parsed(s.header_html ?? "", copyCard, header);
    }
    const tones = s.notice_tones ?? [];
    notices.replaceChildren(
      ...(s.notices ?? []).map((n, i) => h("div", tones[i] === "info" ? "nb-notice nb-info" : "nb-notice", n)),
    );
    stop.hidden = Boolean(s.finished);
    spinner.hidden = Boolean(s.finished) || s.state === "awaiting_approval";
    tick();
  }

  function tick() {
    /** @type {Status} */
    const s = model.get("status") ?? {};
    const elapsed = (s.elapsed_s ?? 0) + (s.finished ? 0 : (Date.now() - receivedAt) / 1000);
    statusText.textContent = s.label ?? "";
    statusDetails.textContent = `${elapsed.toFixed(1)} s · ${s.details ?? ""}`;
  }

  stop.addEventListener("click", () => {
    /** @type {HTMLButtonElement} */ (stop).disabled = true;
    request({ type: "stop" }).catch((err) => {
      /** @type {HTMLButtonElement} */ (stop).disabled = false;
      showProblem(`Stop failed: ${err.message}`);
    });
  });

  /**
   * Keep the status line (and Stop) in sight while the view is taller than what shows of
   * it: the line stays last in the view, drawn at the bottom of the visible area.
   * (CSS sticky cannot: the output area is its own scroll box.)
   */
  let placing = 0;
  function placeStatus() {
    placing = 0;
    if (!root.isConnected) return;
    /** @type {HTMLElement | null} */
    let scroller = root.parentElement;
    while (scroller && !(scroller.scrollHeight > scroller.clientHeight + 1
      && /(auto|scroll)/.test(getComputedStyle(scroller).overflowY))) scroller = scroller.parentElement;
    const bottom = scroller ? scroller.getBoundingClientRect().bottom : window.innerHeight;
    const view = root.getBoundingClientRect();
    const line = statusLine.offsetHeight;
    const lift = Math.min(Math.max(view.bottom - bottom, 0), Math.max(view.height - line * 2, 0));
    statusLine.style.transform = lift > 0 ? `translateY(${-lift}px)` : "";
    statusLine.classList.toggle("nb-floating", lift > 0);
  }
  const schedulePlace = () => {
    if (!placing) placing = window.requestAnimationFrame(placeStatus);
  };
  document.addEventListener("scroll", schedulePlace, true);
  window.addEventListener("resize", schedulePlace);
  const resized = new ResizeObserver(schedulePlace);
  resized.observe(root);

  const onMedia = () => nodes.forEach((node) => node && fillImages(node));
  model.on("change:blocks", renderBlocks);
  model.on("change:media", onMedia);
  model.on("change:status", renderStatus);
  model.on("msg:custom", onMessage);
  renderBlocks();
  renderStatus();
  const timer = window.setInterval(tick, 1000);

  return () => {
    window.clearInterval(timer);
    document.removeEventListener("scroll", schedulePlace, true);
    window.removeEventListener("resize", schedulePlace);
    resized.disconnect();
    if (placing) window.cancelAnimationFrame(placing);
    if (frame) window.cancelAnimationFrame(frame);
    model.off("change:blocks", renderBlocks);
    model.off("change:media", onMedia);
    model.off("change:status", renderStatus);
    model.off("msg:custom", onMessage);
    for (const { timer: t } of waiting.values()) window.clearTimeout(t);
  };
}

export default { render };
