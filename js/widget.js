// nbagent live view: one ESM module, no bundler, no dependencies.
//
// State comes from two traits (`blocks`, `status`) plus custom "delta" messages that
// carry streamed text every 33–50 ms; `synced_seq` says which delta the last `blocks`
// sync already contains. Model text is rendered by building DOM nodes (textContent,
// createElement) from a small Markdown subset: nothing from the model is ever parsed
// as HTML, and only http(s)/mailto links are kept.

/**
 * @typedef {{kind: "text", text: string}} TextBlock
 * @typedef {{kind: "tool", id: string, name: string,
 *   arguments: Array<[string, "code" | "json", string]>, arguments_json: string,
 *   status: string, decision: string | null, result: string | null,
 *   duration_s: number, truncated: boolean, read_only: boolean, problem: string | null,
 *   preview: Array<[string, string]> | null, display: DisplayItem[],
 *   display_note: string | null}} ToolBlock
 * @typedef {{kind: "image", mime: string, ref: string, alt?: string}
 *   | {kind: "text", text: string}} DisplayItem
 * @typedef {TextBlock | ToolBlock} Block
 * @typedef {{state: string, status: string | null, error: string | null, notices: string[],
 *   model: string, session: string, turns: number, tokens: number, cost: string,
 *   elapsed_s: number, finished: boolean, context_tokens?: number}} Status
 * @typedef {{type: "delta", seq: number, block: number, text: string}
 *   | {type: "ack", request: number, ok: boolean, error?: string}} Incoming
 * @typedef {{get(name: string): any, on(event: string, cb: Function): void,
 *   off(event: string, cb: Function): void, send(content: object): void}} Model
 */

const REQUEST_TIMEOUT_MS = 10000;
const SAFE_URL = /^(https?:|mailto:)/i;
// Tool images: only PNG/JPEG, only plain base64 (checked in the kernel too).
const IMAGE_MIMES = new Set(["image/png", "image/jpeg"]);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DIFF_KINDS = new Set(["add", "del", "hunk", "meta", "ctx"]);

const CSS = `
.nbagent-view { font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-content-font-size1, 14px);
  color: var(--jp-content-font-color1, #222); border-left: 3px solid var(--jp-brand-color1, #1976d2);
  padding: 4px 10px; margin: 2px 0; }
.nbagent-view .nb-status { display: flex; gap: 8px; align-items: center; color: var(--jp-content-font-color2, #666);
  font-size: 90%; flex-wrap: wrap; }
.nbagent-view .nb-text p { margin: 4px 0; white-space: pre-wrap; }
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
.nbagent-view .nb-diff-hunk { color: #0550ae; }
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
 * Inline Markdown (code spans, bold, italic, links) as DOM nodes.
 * @param {string} text
 * @param {HTMLElement} into
 */
function inline(text, into) {
  const pattern = /(`+)([^`]+?)\1|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    const at = m.index ?? 0;
    if (at > last) into.append(text.slice(last, at));
    if (m[2] !== undefined) into.append(h("code", "", m[2]));
    else if (m[3] !== undefined) into.append(h("strong", "", m[3]));
    else if (m[4] !== undefined) into.append(h("em", "", m[4]));
    else if (SAFE_URL.test(m[6])) {
      const a = /** @type {HTMLAnchorElement} */ (h("a", "", m[5]));
      a.href = m[6];
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      into.append(a);
    } else into.append(m[5]);
    last = at + m[0].length;
  }
  if (last < text.length) into.append(text.slice(last));
}

/**
 * A small, safe Markdown subset: fences, headings, lists, quotes, paragraphs.
 * @param {string} text
 * @returns {HTMLElement}
 */
function markdown(text) {
  const out = h("div", "nb-text");
  const lines = text.split("\n");
  /** @type {HTMLElement | null} */
  let list = null;
  /** @type {string[]} */
  let para = [];
  const endPara = () => {
    if (para.length) {
      const p = h("p");
      inline(para.join("\n"), p);
      out.append(p);
      para = [];
    }
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)/);
    if (fence) {
      endPara();
      list = null;
      const code = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) code.push(lines[i]);
      const pre = h("pre");
      pre.append(h("code", "", code.join("\n")));
      out.append(pre);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const bullet = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (heading) {
      endPara();
      list = null;
      const node = h(`h${Math.min(6, heading[1].length + 2)}`);
      inline(heading[2], node);
      out.append(node);
    } else if (bullet) {
      endPara();
      const tag = /\d/.test(bullet[1]) ? "OL" : "UL";
      if (!list || list.tagName !== tag) {
        list = h(tag.toLowerCase());
        out.append(list);
      }
      const li = h("li");
      inline(bullet[2], li);
      list.append(li);
    } else if (line.startsWith(">")) {
      endPara();
      list = null;
      const quote = h("blockquote");
      inline(line.replace(/^>\s?/, ""), quote);
      out.append(quote);
    } else if (!line.trim()) {
      endPara();
      list = null;
    } else {
      list = null;
      para.push(line);
    }
  }
  endPara();
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

  /** @type {string[]} */
  let texts = [];
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

  /**
   * @param {ToolBlock} card
   * @returns {HTMLElement}
   */
  function cardNode(card) {
    const node = h("div", "nb-card");
    node.dataset.status = card.status;
    node.dataset.callId = card.id;
    const head = h("div");
    head.append(h("b", "", "tool "), h("code", "", card.name), ` · ${label(card)}`);
    node.append(head);
    if (card.arguments.length) {
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
      node.append(table);
    } else if (card.arguments_json) {
      node.append(h("pre", "", card.arguments_json));
    }
    if (card.problem) node.append(h("div", "nb-muted", card.problem));
    if (card.preview) node.append(changesNode(card));
    if (card.decision) node.append(h("div", "nb-muted", card.decision));
    if (card.status === "pending") {
      const buttons = h("div", "nb-buttons");
      for (const [name, action] of [["Approve", "approve"], ["Reject", "reject"], ["Always allow", "always"]]) {
        const button = /** @type {HTMLButtonElement} */ (h("button", `nb-${action}`, name));
        button.disabled = deciding.has(card.id);
        button.addEventListener("click", () => {
          deciding.add(card.id);
          for (const b of buttons.querySelectorAll("button")) /** @type {HTMLButtonElement} */ (b).disabled = true;
          request({ type: "decide", id: card.id, action }).catch((err) => {
            deciding.delete(card.id);
            for (const b of buttons.querySelectorAll("button")) /** @type {HTMLButtonElement} */ (b).disabled = false;
            showProblem(`${name} failed: ${err.message}`);
          });
        });
        buttons.append(button);
      }
      node.append(buttons);
    }
    if (card.result !== null && card.status !== "denied") {
      const details = h("details");
      details.open = true;
      details.append(h("summary", "", card.truncated ? "result (truncated)" : "result"), h("pre", "", card.result));
      node.append(details);
    }
    if ((card.display ?? []).length || card.display_note) node.append(displayNode(card));
    return node;
  }

  /**
   * What the call would change: preformatted lines, coloured by kind (text only).
   * Open while the call waits for a decision, closed afterwards unless the user says.
   * @param {ToolBlock} card
   * @returns {HTMLElement}
   */
  function changesNode(card) {
    const details = /** @type {HTMLDetailsElement} */ (h("details", "nb-changes"));
    details.open = changesOpen.get(card.id) ?? (card.status === "pending" || card.status === "proposed");
    details.addEventListener("toggle", () => changesOpen.set(card.id, details.open));
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

  /** @param {ToolBlock} card */
  function label(card) {
    const names = /** @type {Record<string, string>} */ ({
      proposed: "proposed", pending: "waiting for approval", approved: "approved",
      running: "running", ok: "done", error: "failed", denied: "denied", cancelled: "cancelled",
    });
    const parts = [names[card.status] ?? card.status];
    if (card.duration_s) parts.push(`${card.duration_s.toFixed(2)} s`);
    return parts.join(" · ");
  }

  function renderBlocks() {
    /** @type {Block[]} */
    const blocks = model.get("blocks") ?? [];
    const synced = model.get("synced_seq") ?? 0;
    body.replaceChildren();
    texts = [];
    textNodes = [];
    blocks.forEach((block, i) => {
      if (block.kind === "text") {
        texts[i] = block.text;
        const node = markdown(block.text);
        textNodes[i] = node;
        body.append(node);
      } else {
        textNodes[i] = null;
        body.append(cardNode(block));
      }
    });
    blockCount = blocks.length;
    lastSeq = synced; // the trait holds every delta up to `synced_seq`
  }

  function flushText() {
    frame = 0;
    for (const i of dirty) {
      const fresh = markdown(texts[i] ?? "");
      const old = textNodes[i];
      if (old) old.replaceWith(fresh);
      else body.append(fresh);
      textNodes[i] = fresh;
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
      texts[msg.block] = (texts[msg.block] ?? "") + msg.text;
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
    if (s.error && !(s.notices ?? []).includes(s.error)) notices.append(h("div", "nb-notice", s.error));
    stop.hidden = Boolean(s.finished);
    tick();
  }

  function tick() {
    /** @type {Status} */
    const s = model.get("status") ?? {};
    const elapsed = (s.elapsed_s ?? 0) + (s.finished ? 0 : (Date.now() - receivedAt) / 1000);
    const state = (s.status ?? s.state ?? "").replace(/_/g, " ");
    const context = s.context_tokens ? ` · context ~${s.context_tokens.toLocaleString("en-US")} tokens` : "";
    statusText.textContent = `${state} · ${elapsed.toFixed(1)} s · ${(s.tokens ?? 0).toLocaleString()} tokens${context} · ${s.cost ?? ""} · ${s.model ?? ""}`;
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
