// nbagent live view: one ESM module, no bundler, no dependencies.
//
// State comes from two traits (`blocks`, `status`) plus custom "delta" messages that
// carry streamed text every 33–50 ms; `synced_seq` says which delta the last `blocks`
// sync already contains. The kernel decides what a card shows and how states are called
// (the parts of `nbagent.render`): this file lays the parts out and makes no decisions.
// Text blocks arrive as safe HTML rendered by the kernel; it is parsed inert, and only
// an allowlist of tags and attributes is kept. Streamed text is shown as text.

/**
 * @typedef {{kind: "text", text: string, html: string, tail?: string}} TextBlock
 * @typedef {{kind: "tool", id: string, name: string, status: string, label: string,
 *   decision: string | null, duration: string | null, awaits_decision: boolean,
 *   trust_label: string | null,
 *   arguments: Array<[string, "code" | "json", string]>, arguments_json: string,
 *   problem: string | null, preview: Array<[string, string]> | null, changes_open: boolean,
 *   denied: string | null, result: string | null, truncated: boolean,
 *   display: DisplayItem[], display_note: string | null, sections: string[]}} ToolBlock
 * @typedef {{kind: "image", mime: string, ref: string, alt?: string}
 *   | {kind: "text", text: string}} DisplayItem
 * @typedef {{kind: "budget", id: string, label: string, decision: string | null,
 *   awaits_decision: boolean, buttons: Array<[string, string]>}} BudgetBlock
 * @typedef {TextBlock | ToolBlock | BudgetBlock} Block
 * @typedef {{notices: string[], label: string, details: string, elapsed_s: number,
 *   finished: boolean}} Status
 * @typedef {{type: "delta", seq: number, block: number, text: string}
 *   | {type: "ack", request: number, ok: boolean, error?: string}} Incoming
 * @typedef {{get(name: string): any, on(event: string, cb: Function): void,
 *   off(event: string, cb: Function): void, send(content: object): void}} Model
 */

const REQUEST_TIMEOUT_MS = 10000;
const SAFE_URL = /^(https?:|mailto:|#)/i;
// Tool images: only PNG/JPEG, only plain base64 (checked in the kernel too).
const IMAGE_MIMES = new Set(["image/png", "image/jpeg"]);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DIFF_KINDS = new Set(["add", "del", "hunk", "meta", "ctx"]);
// What the kernel's Markdown renderer writes; anything else is dropped with its content.
const TEXT_TAGS = new Set([
  "P", "BR", "HR", "STRONG", "EM", "DEL", "CODE", "PRE", "A", "UL", "OL", "LI", "BLOCKQUOTE",
  "H1", "H2", "H3", "H4", "H5", "H6", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD",
]);
const BUTTONS = [["Approve", "approve"], ["Reject", "reject"], ["Always allow", "always"]];

const CSS = `
.nbagent-view { font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-content-font-size1, 14px);
  color: var(--jp-content-font-color1, #222); border-left: 3px solid var(--jp-brand-color1, #1976d2);
  padding: 4px 10px; margin: 2px 0; }
.nbagent-view .nb-status { display: flex; gap: 8px; align-items: center; color: var(--jp-content-font-color2, #666);
  font-size: 90%; flex-wrap: wrap; }
.nbagent-view .nb-text p { margin: 4px 0; white-space: pre-wrap; }
.nbagent-view .nb-text ul, .nbagent-view .nb-text ol { margin: 4px 0; }
.nbagent-view .nb-text code { background: var(--jp-layout-color2, #f5f5f5); padding: 0 2px; }
.nbagent-view .nb-text pre code { padding: 0; }
.nbagent-view .nb-text td, .nbagent-view .nb-text th { border: 1px solid var(--jp-border-color2, #ddd); padding: 1px 6px; }
.nbagent-view .nb-tail { white-space: pre-wrap; }
.nbagent-view pre { background: var(--jp-layout-color2, #f5f5f5); padding: 4px 6px; margin: 4px 0;
  white-space: pre-wrap; overflow-x: auto; }
.nbagent-view .nb-card { border: 1px solid var(--jp-border-color1, #bbb); border-radius: 4px; padding: 4px 8px; margin: 6px 0; }
.nbagent-view .nb-card[data-status="pending"] { border-color: var(--jp-warn-color1, #f57c00); }
.nbagent-view .nb-card[data-status="ok"] { border-color: var(--jp-success-color1, #2e7d32); }
.nbagent-view .nb-card[data-status="denied"], .nbagent-view .nb-card[data-status="error"] {
  border-color: var(--jp-error-color1, #c62828); }
.nbagent-view .nb-args td { vertical-align: top; text-align: left; padding: 1px 6px 1px 0; }
.nbagent-view .nb-buttons { display: flex; gap: 6px; margin: 4px 0; }
.nbagent-view button { cursor: pointer; padding: 2px 10px; }
.nbagent-view .nb-notice { color: var(--jp-error-color1, #c62828); font-weight: bold; margin: 4px 0; }
.nbagent-view .nb-muted { color: var(--jp-content-font-color2, #666); }
.nbagent-view .nb-diff-add { color: #116329; background: #dafbe1; }
.nbagent-view .nb-diff-del { color: #82071e; background: #ffebe9; }
.nbagent-view .nb-diff-hunk { color: var(--jp-info-color1, #0550ae); }
.nbagent-view .nb-diff-meta { color: var(--jp-content-font-color2, #57606a); font-weight: bold; }
.nbagent-view .nb-display-image { display: block; max-width: 100%; margin: 4px 0; }
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
 * Copy the allowed part of parsed HTML: known tags, safe links, nothing else.
 * Parsing into a <template> is inert (no script runs, no image loads).
 * @param {Node} from
 * @param {Node} into
 */
function copyAllowed(from, into) {
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
      copyAllowed(element, node);
      into.appendChild(node);
    }
  }
}

/**
 * A text block: the kernel's safe HTML, and text streamed since as plain text.
 * @param {string} html
 * @param {string} tail
 * @returns {HTMLElement}
 */
function textNode(html, tail) {
  const out = h("div", "nb-text");
  const template = document.createElement("template");
  template.innerHTML = html;
  copyAllowed(template.content, out);
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
  const statusText = h("span", "nb-state");
  const stop = h("button", "nb-stop", "Stop");
  const body = h("div", "nb-body");
  const notices = h("div", "nb-notices");
  statusLine.append(statusText, stop);
  root.append(style, body, notices, statusLine);
  el.append(root);

  /** Text streamed into each block since the last `blocks` sync. @type {string[]} */
  let tails = [];
  /** @type {Array<HTMLElement | null>} */
  let textNodes = [];
  let blockCount = 0;
  let lastSeq = 0;
  let nextRequest = 1;
  let receivedAt = Date.now();
  /** @type {Map<number, {resolve: Function, reject: Function, timer: number}>} */
  const waiting = new Map();
  /** @type {Set<string>} */
  const deciding = new Set();
  /** @type {Set<number>} */
  const dirty = new Set();
  /** Image nodes by media key, kept across re-renders so each image decodes once.
   * @type {Map<string, HTMLImageElement>} */
  const images = new Map();
  /** "Changes" sections the user opened or closed, by call id.
   * @type {Map<string, boolean>} */
  const changesOpen = new Map();
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

  /** How each section of a card is laid out, by the kind the kernel named it.
   * @type {Record<string, (card: ToolBlock) => HTMLElement>} */
  const SECTIONS = {
    arguments: (card) => {
      const table = h("table", "nb-args");
      for (const [key, how, text] of card.arguments) {
        const row = h("tr");
        const value = h("td");
        if (how === "code") {
          const pre = h("pre");
          pre.append(h("code", "", text));
          value.append(pre);
        } else value.append(h("code", "", text));
        row.append(h("td", "", key), value);
        table.append(row);
      }
      return table;
    },
    arguments_json: (card) => h("pre", "", card.arguments_json),
    problem: (card) => h("div", "nb-muted", card.problem ?? ""),
    preview: changesNode,
    denied: (card) => {
      const node = h("div", "nb-denied");
      node.append(h("b", "", "Denied: "), card.denied ?? "");
      return node;
    },
    result: (card) => {
      const details = /** @type {HTMLDetailsElement} */ (h("details", "nb-result"));
      details.open = true;
      details.append(h("summary", "", card.truncated ? "result (truncated)" : "result"), h("pre", "", card.result ?? ""));
      return details;
    },
    display: displayNode,
  };

  /**
   * @param {ToolBlock} card
   * @returns {HTMLElement}
   */
  function cardNode(card) {
    const node = h("div", "nb-card");
    node.dataset.status = card.status;
    node.dataset.callId = card.id;
    const head = h("div", "nb-card-head");
    const summary = [card.label, card.decision, card.duration].filter(Boolean).join(" · ");
    head.append(h("b", "", "tool "), h("code", "", card.name), ` · ${summary}`);
    node.append(head);
    for (const kind of card.sections ?? []) {
      const section = SECTIONS[kind];
      if (section) node.append(section(card));
    }
    if (card.awaits_decision) node.append(buttonsNode(card));
    return node;
  }

  /**
   * A run paused at its budget: what was reached, then the kernel's buttons (continue /
   * stop) or how it was decided. Same card and buttons as a tool call's.
   * @param {BudgetBlock} card
   * @returns {HTMLElement}
   */
  function budgetNode(card) {
    const node = h("div", "nb-card nb-budget");
    node.dataset.status = card.awaits_decision ? "pending" : "ok";
    node.append(h("div", "nb-card-head", [card.label, card.decision].filter(Boolean).join(" · ")));
    if (card.awaits_decision) node.append(buttonsNode(card, card.buttons));
    return node;
  }

  /**
   * Approve / Reject / Always allow, for a card that waits for a decision, and the trust
   * button when the kernel offers one (it names it); or the buttons the kernel names.
   * @param {{id: string, trust_label?: string | null}} card
   * @param {Array<[string, string]>} [named]
   * @returns {HTMLElement}
   */
  function buttonsNode(card, named) {
    const buttons = h("div", "nb-buttons");
    /** @param {boolean} disabled */
    const disable = (disabled) => {
      for (const b of buttons.querySelectorAll("button")) /** @type {HTMLButtonElement} */ (b).disabled = disabled;
    };
    const actions = named ?? (card.trust_label ? [...BUTTONS, [card.trust_label, "trust"]] : BUTTONS);
    for (const [name, action] of actions) {
      const button = /** @type {HTMLButtonElement} */ (h("button", `nb-${action}`, name));
      button.disabled = deciding.has(card.id);
      button.addEventListener("click", () => {
        deciding.add(card.id);
        disable(true);
        request({ type: "decide", id: card.id, action }).catch((err) => {
          deciding.delete(card.id);
          disable(false);
          showProblem(`${name} failed: ${err.message}`);
        });
      });
      buttons.append(button);
    }
    return buttons;
  }

  /**
   * What the call would change: preformatted lines, coloured by kind (text only).
   * Open as the kernel says (while the call waits) unless the user opened or closed it.
   * @param {ToolBlock} card
   * @returns {HTMLElement}
   */
  function changesNode(card) {
    const details = /** @type {HTMLDetailsElement} */ (h("details", "nb-changes"));
    details.open = changesOpen.get(card.id) ?? card.changes_open;
    // Setting `open` above fires "toggle" too: only a change away from what the kernel
    // says is the user's, and outlives the decision.
    details.addEventListener("toggle", () => {
      if (details.open === card.changes_open) changesOpen.delete(card.id);
      else changesOpen.set(card.id, details.open);
    });
    const pre = h("pre", "nb-diff");
    for (const [kind, line] of card.preview ?? []) {
      pre.append(h("span", DIFF_KINDS.has(kind) ? `nb-diff-${kind}` : "", line), "\n");
    }
    details.append(h("summary", "", "changes"), pre);
    return details;
  }

  /**
   * What the tool displayed: checked PNG/JPEG images from `media`, else text.
   * @param {ToolBlock} card
   * @returns {HTMLElement}
   */
  function displayNode(card) {
    const box = h("div", "nb-displays");
    /** @type {Record<string, {mime: string, data: string}>} */
    const media = model.get("media") ?? {};
    for (const item of card.display ?? []) {
      if (item.kind === "image") {
        const entry = media[item.ref];
        if (entry && IMAGE_MIMES.has(entry.mime) && BASE64.test(entry.data)) {
          let img = images.get(item.ref);
          if (!img) {
            img = /** @type {HTMLImageElement} */ (h("img", "nb-display-image"));
            img.alt = item.alt ?? "";
            img.src = `data:${entry.mime};base64,${entry.data}`;
            images.set(item.ref, img);
          }
          box.append(img);
        } else box.append(h("pre", "nb-display", item.alt || "[image]"));
      } else box.append(h("pre", "nb-display", item.text ?? ""));
    }
    if (card.display_note) box.append(h("div", "nb-muted", card.display_note));
    return box;
  }

  function renderBlocks() {
    /** @type {Block[]} */
    const blocks = model.get("blocks") ?? [];
    const synced = model.get("synced_seq") ?? 0;
    body.replaceChildren();
    tails = [];
    textNodes = [];
    blocks.forEach((block, i) => {
      if (block.kind === "text") {
        tails[i] = block.tail ?? ""; // text the kernel has not rendered yet
        const node = textNode(block.html ?? "", tails[i]);
        textNodes[i] = node;
        body.append(node);
      } else {
        textNodes[i] = null;
        body.append(block.kind === "budget" ? budgetNode(block) : cardNode(block));
      }
    });
    blockCount = blocks.length;
    lastSeq = synced; // the trait holds every delta up to `synced_seq`
  }

  function flushText() {
    frame = 0;
    for (const i of dirty) {
      let node = textNodes[i];
      if (!node) {
        node = textNode("", "");
        body.append(node);
        textNodes[i] = node;
      }
      const tail = node.querySelector(".nb-tail");
      if (tail) tail.textContent = tails[i] ?? "";
    }
    dirty.clear();
  }

  /** @param {Incoming} msg */
  function onMessage(msg) {
    if (msg.type === "delta") {
      if (msg.seq !== lastSeq + 1) return; // already in a sync, or a gap the next sync fills
      lastSeq = msg.seq;
      if (msg.block > blockCount) return;
      if (msg.block === blockCount) blockCount++; // streaming started a new text block
      tails[msg.block] = (tails[msg.block] ?? "") + msg.text;
      dirty.add(msg.block);
      if (!frame) frame = window.requestAnimationFrame(flushText);
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
    notices.replaceChildren(...(s.notices ?? []).map((n) => h("div", "nb-notice", n)));
    stop.hidden = Boolean(s.finished);
    tick();
  }

  function tick() {
    /** @type {Status} */
    const s = model.get("status") ?? {};
    const elapsed = (s.elapsed_s ?? 0) + (s.finished ? 0 : (Date.now() - receivedAt) / 1000);
    statusText.textContent = `${s.label ?? ""} · ${elapsed.toFixed(1)} s · ${s.details ?? ""}`;
  }

  stop.addEventListener("click", () => {
    /** @type {HTMLButtonElement} */ (stop).disabled = true;
    request({ type: "stop" }).catch((err) => {
      /** @type {HTMLButtonElement} */ (stop).disabled = false;
      showProblem(`Stop failed: ${err.message}`);
    });
  });

  model.on("change:blocks", renderBlocks);
  model.on("change:media", renderBlocks);
  model.on("change:status", renderStatus);
  model.on("msg:custom", onMessage);
  renderBlocks();
  renderStatus();
  const timer = window.setInterval(tick, 1000);

  return () => {
    window.clearInterval(timer);
    if (frame) window.cancelAnimationFrame(frame);
    model.off("change:blocks", renderBlocks);
    model.off("change:media", renderBlocks);
    model.off("change:status", renderStatus);
    model.off("msg:custom", onMessage);
    for (const { timer: t } of waiting.values()) window.clearTimeout(t);
  };
}

export default { render };
