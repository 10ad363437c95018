// Ember playground: a small, Slack-like client for playground/web.py (no build step, no dependencies).
//
// DOM hooks, kept stable for browser tests:
//   body[data-ready="true"]          the first load has finished; body[data-user] = the viewer's user id
//   #user-switcher                   <select>: option value = user id, data-name = user name ("ana")
//   #channel-list .sidebar-item[data-channel-id][data-channel-name][data-kind]   (.active = open)
//                                    data-channel-name is the name shown: "general", "random", "leads";
//                                    the DM with the bot is data-kind="im", data-channel-name="Ember"
//   #channel-title                   the open channel's name
//   #messages                        the open channel's messages
//   .message[data-ts][data-user]     a message; also .ephemeral, .streaming, .highlight
//     .message-author .message-time
//     .message-text                  the text, rendered from mrkdwn; where content blocks (section, markdown,
//                                    header) stand in for the text, those blocks
//     .message-blocks                Block Kit blocks (the feedback and other controls)
//     .typing-indicator              while the message is still streaming
//     .ephemeral-note                "Only visible to you"
//     .reaction[data-name]           a reaction chip (.reacted when it is yours); .reaction-count inside
//     .add-reaction                  opens .reaction-picker with .picker-option[data-name] (+1, -1)
//     .message-actions               hover toolbar: .reaction-option[data-name="+1"|"-1"], .reply-in-thread
//     .reply-count                   "N replies": opens the thread pane
//   .block-button[data-action-id][data-block-id][data-value]     Block Kit buttons (.style-primary/.style-danger)
//   .feedback-button[data-value][data-action-id]                 feedback_buttons thumbs (.selected once chosen)
//   #composer textarea, #composer .error                         the channel's message box and its error
//   #thread-pane, #thread-messages, #thread-composer textarea, #thread-composer .error, .thread-close
//   #modal-root .modal[data-view-id][data-callback-id]: .modal-title, .input-block[data-block-id] holding
//     textarea/input[data-action-id], .input-error, .modal-error, .modal-submit, .modal-close
//   #status-bar (.status-model, .status-queue, .status-training, .status-connection), #train-button,
//   #training-log (.training-lines, .training-result)
//   #toast                           transient errors from clicks, reactions and the like
//   #messages .suggested-prompts .prompt-chip[data-message]    the agent view's prompts, in the DM with Ember
//   .message-actions .more-actions opens .shortcut-menu: .shortcut-option[data-callback-id] runs the app's
//     message shortcut ("Summarize this thread", "Ask Ember about this") on that message
//   #agent-toggle opens #agent-pane, Ember beside the open channel (the agent view's split pane):
//     .agent-title (the open chat's title, or "Ember"), .agent-context ("Beside #general"), .agent-back,
//     .agent-new, .agent-close, #agent-messages holding .suggested-prompts .prompt-chip[data-message] and
//     .agent-chat[data-ts] (the list) or the open chat's .message elements, .agent-status ("Ember is
//     thinking…" while Ember works), #agent-composer textarea
//   #channel-list .sidebar-item[data-home] opens Ember's Home tab; #messages .home-view shows it (its
//                                    buttons are .block-button; one with a confirm asks before it clicks)

const API = "/playground/api/";
const STORAGE_KEY = "ember-playground-user";
const STATUS_EVERY_MS = 5000;
const STATUS_TRAINING_MS = 1000;

const state = {
  me: null, // viewer's user id
  people: [],
  directory: null,
  channelId: null,
  threadTs: null,
  history: null,
  thread: null,
  views: [],
  home: false, // Ember's Home tab is open instead of a channel
  agent: { open: false, threadTs: null, data: null }, // Ember's pane beside the channel, and its open chat
  status: null,
  epoch: 0, // bumped on every user or channel switch; stale answers are dropped
  pendingFocus: null, // {ts} to scroll to and highlight once rendered
  stickToBottom: { messages: false, thread: false, agent: false }, // after the viewer's own send: scroll down on the next render
};
const rendered = { history: "", thread: "", directory: "", home: "", agent: "" };
const chosenFeedback = new Map(); // `${channel}|${ts}|${action_id}` -> value of the chosen thumb

// --- small helpers -------------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Build an element. Children are nodes or strings (strings become text nodes, never HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "html") el.innerHTML = value; // only ever output of renderMrkdwn, which escapes
    else if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) if (data !== undefined && data !== null) el.dataset[name] = data;
    } else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function apiGet(name, params = {}) {
  const response = await fetch(`${API}${name}?${new URLSearchParams(params)}`, { cache: "no-store" });
  return answer(response);
}

async function apiPost(name, payload = {}) {
  const response = await fetch(`${API}${name}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  return answer(response);
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { ok: false, error: "bad_response", message: response.statusText };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function errorText(body) {
  if (!body) return "Something went wrong.";
  return body.message || body.error || "Something went wrong.";
}

let toastTimer = null;
function toast(message) {
  const el = $("#toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 5000);
}

function compareTs(a, b) {
  const [as, af = ""] = String(a).split(".");
  const [bs, bf = ""] = String(b).split(".");
  return Number(as) - Number(bs) || af.padEnd(6, "0").localeCompare(bf.padEnd(6, "0"));
}

function tsDate(ts) {
  return new Date(Number(String(ts).split(".")[0]) * 1000);
}

function timeLabel(ts) {
  return tsDate(ts).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
}

function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getTime() - 86400000);
  if (date.toDateString() === today.toDateString()) return "Today";
  if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
  return date.toLocaleDateString([], { weekday: "long", month: "long", day: "numeric" });
}

function repliesLabel(n) {
  return n === 1 ? "1 reply" : `${n} replies`;
}

// --- people and channels -------------------------------------------------------------------------

function personById(id) {
  const dir = state.directory;
  if (dir && dir.bot && dir.bot.id === id) return { id, name: dir.bot.name, real_name: dir.bot.name, is_bot: true };
  const people = (dir && dir.people) || state.people;
  return people.find((p) => p.id === id) || null;
}

function displayName(person) {
  if (!person) return "unknown";
  return person.real_name || person.name || person.id || "unknown";
}

function channelById(id) {
  return ((state.directory && state.directory.channels) || []).find((c) => c.id === id) || null;
}

function channelPrefix(channel) {
  if (!channel) return "";
  return channel.kind === "private" ? "🔒 " : channel.kind === "im" ? "" : "# ";
}

/** The name shown for a channel: "general", "leads"; a DM shows the bot's name ("Ember"). */
function channelLabel(channel) {
  if (!channel) return "";
  if (channel.kind === "im") {
    const bot = state.directory && state.directory.bot;
    return (bot && bot.name) || String(channel.label || channel.name).replace(/\s*\(DM\)$/, "");
  }
  return String(channel.name || channel.label || channel.id).replace(/^[#🔒\s]+/u, "");
}

// --- mrkdwn (and the Markdown Ember streams) -----------------------------------------------------

const EMOJI = {
  "+1": "👍", thumbsup: "👍", "-1": "👎", thumbsdown: "👎", heart: "❤️", tada: "🎉", eyes: "👀",
  white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", fire: "🔥", rocket: "🚀",
  smile: "😄", slightly_smiling_face: "🙂", joy: "😂", thinking_face: "🤔", pray: "🙏", raised_hands: "🙌",
  clap: "👏", wave: "👋", star: "⭐", bulb: "💡", memo: "📝", calendar: "📆", question: "❓",
  exclamation: "❗", sparkles: "✨", hourglass: "⌛", hourglass_flowing_sand: "⏳", lock: "🔒",
  point_right: "👉", ok_hand: "👌", muscle: "💪", bug: "🐛", book: "📖", link: "🔗", zap: "⚡",
};

function emoji(name) {
  return EMOJI[name] || `:${name}:`;
}

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/** Slack escapes &, < and > in message text; the real characters are markup. */
function unescapeSlack(text) {
  return String(text).replace(/&(amp|lt|gt);/g, (_, name) => ({ amp: "&", lt: "<", gt: ">" })[name]);
}

function safeUrl(url) {
  return /^(https?:|mailto:)/i.test(url) ? url : null;
}

/** Render Slack mrkdwn (and common Markdown) to HTML. Every piece of the input is escaped. */
function renderMrkdwn(source) {
  const text = String(source ?? "").replace(/\u0000/g, "");
  const parts = text.split("```");
  let html = "";
  parts.forEach((part, index) => {
    const isCode = index % 2 === 1 && index < parts.length - 1;
    if (isCode) {
      const code = part.replace(/^[A-Za-z0-9_+-]{1,20}\n/, "").replace(/^\n/, "").replace(/\n$/, "");
      html += `<pre class="code-block">${escapeHtml(unescapeSlack(code))}</pre>`;
    } else {
      let prose = index % 2 === 1 ? "```" + part : part; // an unclosed fence stays text
      if (index > 0) prose = prose.replace(/^\n/, "");
      if (index < parts.length - 1) prose = prose.replace(/\n$/, "");
      html += renderLines(prose);
    }
  });
  return html;
}

function renderLines(text) {
  if (!text) return "";
  const out = []; // {block: bool, html}
  let list = null; // {tag, items}
  let quote = null; // [html lines]
  const flush = () => {
    if (list) out.push({ block: true, html: `<${list.tag}>${list.items.map((i) => `<li>${i}</li>`).join("")}</${list.tag}>` });
    if (quote) out.push({ block: true, html: `<blockquote>${quote.join("<br>")}</blockquote>` });
    list = null;
    quote = null;
  };
  for (const line of text.split("\n")) {
    let m;
    if ((m = line.match(/^(?:>|&gt;)\s?(.*)$/))) {
      if (list) flush();
      (quote ??= []).push(inline(m[1]));
    } else if ((m = line.match(/^\s*(?:[•◦▪]|[-*](?=\s))\s*(.*)$/))) {
      if (quote || (list && list.tag !== "ul")) flush();
      (list ??= { tag: "ul", items: [] }).items.push(inline(m[1]));
    } else if ((m = line.match(/^\s*\d+[.)]\s+(.*)$/))) {
      if (quote || (list && list.tag !== "ol")) flush();
      (list ??= { tag: "ol", items: [] }).items.push(inline(m[1]));
    } else if ((m = line.match(/^#{1,6}\s+(.*)$/))) {
      flush();
      out.push({ block: true, html: `<div class="md-heading">${inline(m[1])}</div>` });
    } else {
      flush();
      out.push({ block: false, html: inline(line) });
    }
  }
  flush();
  let html = "";
  out.forEach((piece, i) => {
    if (i > 0 && !piece.block && !out[i - 1].block) html += "<br>";
    html += piece.html;
  });
  return html;
}

function inline(raw) {
  const slots = [];
  const keep = (html) => `\u0000${slots.push(html) - 1}\u0000`;
  let s = raw.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${escapeHtml(unescapeSlack(code))}</code>`));
  s = s.replace(/<([^<>\n]+)>/g, (_, inner) => keep(renderAngle(inner)));
  s = s.replace(/\[([^\]\n]+)\]\(([^)\s]+)\)/g, (whole, label, url) => {
    const href = safeUrl(unescapeSlack(url));
    return href ? keep(link(href, escapeHtml(unescapeSlack(label)))) : whole;
  });
  s = escapeHtml(unescapeSlack(s));
  s = s.replace(/\*\*([^*\n]+?)\*\*/g, "<strong>$1</strong>");
  s = s.replace(/(^|[^\p{L}\p{N}*])\*([^*\n]+?)\*(?![\p{L}\p{N}*])/gu, "$1<strong>$2</strong>");
  s = s.replace(/(^|[^\p{L}\p{N}_])_([^_\n]+?)_(?![\p{L}\p{N}_])/gu, "$1<em>$2</em>");
  s = s.replace(/(^|[^\p{L}\p{N}~])~~?([^~\n]+?)~~?(?![\p{L}\p{N}~])/gu, "$1<del>$2</del>");
  s = s.replace(/:([a-z0-9_+-]+):/g, (whole, name) => EMOJI[name] || whole);
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => slots[Number(i)]);
}

function link(href, labelHtml) {
  return `<a href="${escapeHtml(href)}" target="_blank" rel="noopener noreferrer">${labelHtml}</a>`;
}

function renderAngle(inner) {
  const [target, ...rest] = inner.split("|");
  const label = rest.join("|");
  if (target.startsWith("@")) {
    const id = target.slice(1);
    const person = personById(id);
    const name = person ? displayName(person) : label || id;
    const mine = id === state.me ? " mention-me" : "";
    return `<span class="mention${mine}" data-user-id="${escapeHtml(id)}">@${escapeHtml(unescapeSlack(name))}</span>`;
  }
  if (target.startsWith("#")) {
    const id = target.slice(1);
    const channel = channelById(id);
    const name = channel ? channelLabel(channel) : label || id;
    return `<a class="channel-mention" href="#" data-channel-id="${escapeHtml(id)}">#${escapeHtml(unescapeSlack(name))}</a>`;
  }
  if (target.startsWith("!")) {
    const special = target.slice(1).split("^")[0];
    const text = label || (["here", "channel", "everyone"].includes(special) ? `@${special}` : special);
    return `<span class="mention">${escapeHtml(unescapeSlack(text))}</span>`;
  }
  const url = unescapeSlack(target);
  const shown = escapeHtml(unescapeSlack(label || target));
  return safeUrl(url) ? link(url, shown) : shown;
}

// --- Block Kit -----------------------------------------------------------------------------------

// Blocks that carry a message's content: with any of them the blocks replace the text, as in Slack.
const CONTENT_BLOCKS = new Set(["section", "markdown", "rich_text", "header"]);
const LEAD_BLOCKS = new Set([...CONTENT_BLOCKS, "context", "divider", "image"]);

function plainText(obj) {
  if (!obj) return "";
  if (typeof obj === "string") return obj;
  const text = String(obj.text ?? "");
  return obj.emoji === false ? text : text.replace(/:([a-z0-9_+-]+):/g, (whole, name) => EMOJI[name] || whole);
}

function textObject(obj, cls = "") {
  if (!obj) return null;
  if (typeof obj === "object" && obj.type === "mrkdwn") return h("div", { class: `mrkdwn ${cls}`, html: renderMrkdwn(obj.text) });
  return h("div", { class: `plain-text ${cls}` }, plainText(obj));
}

/** ctx: {channel, ts} of the message (null inside a modal, where buttons do nothing here). */
function renderBlocks(blocks, ctx) {
  const wrap = h("div", { class: "message-blocks" });
  (blocks || []).forEach((block, index) => {
    const el = renderBlock(block, ctx, index);
    if (el) wrap.append(el);
  });
  return wrap;
}

function renderBlock(block, ctx, index) {
  const blockId = block.block_id || "";
  const attrs = (cls) => ({ class: `block ${cls}`, dataset: { blockId: blockId || undefined, blockType: block.type } });
  switch (block.type) {
    case "section": {
      const el = h("div", attrs("block-section"));
      const body = h("div", { class: "section-body" }, textObject(block.text, "section-text"));
      if (block.fields && block.fields.length) {
        body.append(h("div", { class: "section-fields" }, block.fields.map((f) => textObject(f, "section-field"))));
      }
      el.append(body);
      if (block.accessory) el.append(h("div", { class: "section-accessory" }, renderElement(block.accessory, ctx, blockId)));
      return el;
    }
    case "markdown":
      return h("div", { ...attrs("block-markdown mrkdwn"), html: renderMrkdwn(block.text) });
    case "header":
      return h("div", attrs("block-header"), plainText(block.text));
    case "divider":
      return h("hr", attrs("block-divider"));
    case "context":
      return h(
        "div",
        attrs("block-context"),
        (block.elements || []).map((e) =>
          e.type === "image" ? h("span", { class: "context-image" }, e.alt_text || "") : textObject(e, "context-text"),
        ),
      );
    case "actions":
    case "context_actions":
      return h(
        "div",
        attrs(block.type === "actions" ? "block-actions" : "block-context-actions"),
        (block.elements || []).map((e) => renderElement(e, ctx, blockId)),
      );
    case "rich_text":
      return h("div", attrs("block-rich-text"), richText(block.elements || []));
    case "image":
      return h("div", attrs("block-image"), `🖼 ${block.alt_text || block.title?.text || "image"}`);
    case "input":
      return inputBlock(block, index);
    default: {
      const text = block.text ? (typeof block.text === "string" ? block.text : block.text.text) : "";
      return text ? h("div", { ...attrs("block-unknown mrkdwn"), html: renderMrkdwn(text) }) : null;
    }
  }
}

function renderElement(el, ctx, blockId) {
  if (!el) return null;
  if (el.type === "button") {
    const button = h(
      "button",
      {
        type: "button",
        class: `block-button${el.style ? ` style-${el.style}` : ""}`,
        title: el.accessibility_label,
        dataset: { actionId: el.action_id || "", blockId, value: el.value ?? "" },
      },
      plainText(el.text),
    );
    if (!ctx) button.disabled = true;
    button.addEventListener("click", () => {
      // Slack asks first where the button carries a confirm dialog.
      if (el.confirm && !window.confirm(`${plainText(el.confirm.title)}\n\n${plainText(el.confirm.text)}`)) return;
      if (el.url && safeUrl(el.url)) window.open(el.url, "_blank", "noopener");
      click(ctx, { action_id: el.action_id, block_id: blockId, value: el.value ?? "", type: "button" }, button);
    });
    return button;
  }
  if (el.type === "feedback_buttons") return feedbackButtons(el, ctx, blockId);
  if (el.type === "image") return h("span", { class: "context-image" }, el.alt_text || "");
  const text = el.text ? plainText(el.text) : el.placeholder ? plainText(el.placeholder) : "";
  return text ? h("span", { class: "element-unknown" }, text) : null;
}

function feedbackButtons(el, ctx, blockId) {
  const key = ctx ? `${ctx.channel}|${ctx.ts}|${el.action_id}` : "";
  const wrap = h("span", { class: "feedback-buttons", dataset: { actionId: el.action_id } });
  for (const [kind, spec] of [["positive", el.positive_button], ["negative", el.negative_button]]) {
    if (!spec) continue;
    const button = h(
      "button",
      {
        type: "button",
        class: `feedback-button ${kind}${chosenFeedback.get(key) === spec.value ? " selected" : ""}`,
        title: spec.accessibility_label,
        "aria-label": spec.accessibility_label || plainText(spec.text),
        dataset: { value: spec.value ?? "", actionId: el.action_id, blockId },
      },
      plainText(spec.text),
    );
    if (!ctx) button.disabled = true;
    button.addEventListener("click", async () => {
      const ok = await click(
        ctx,
        { action_id: el.action_id, block_id: blockId, value: spec.value ?? "", type: "feedback_buttons" },
        button,
      );
      if (!ok) return;
      chosenFeedback.set(key, spec.value);
      $$(".feedback-button", wrap).forEach((b) => b.classList.toggle("selected", b === button));
    });
    wrap.append(button);
  }
  return wrap;
}

function richText(elements) {
  return elements.map((e) => {
    switch (e.type) {
      case "rich_text_list": {
        const tag = e.style === "ordered" ? "ol" : "ul";
        return h(tag, {}, (e.elements || []).map((item) => h("li", {}, richInline(item.elements || []))));
      }
      case "rich_text_preformatted":
        return h("pre", { class: "code-block" }, richPlain(e.elements || []));
      case "rich_text_quote":
        return h("blockquote", {}, richInline(e.elements || []));
      default:
        return h("div", { class: "rich-text-section" }, richInline(e.elements || []));
    }
  });
}

function richPlain(elements) {
  return elements.map((e) => e.text ?? e.url ?? "").join("");
}

function richInline(elements) {
  return elements.map((e) => {
    switch (e.type) {
      case "text": {
        let node = document.createTextNode(e.text || "");
        const style = e.style || {};
        for (const [flag, tag] of [["code", "code"], ["bold", "strong"], ["italic", "em"], ["strike", "del"]]) {
          if (style[flag]) node = h(tag, {}, node);
        }
        return node;
      }
      case "link":
        return safeUrl(e.url || "") ? h("a", { href: e.url, target: "_blank", rel: "noopener noreferrer" }, e.text || e.url) : e.text || "";
      case "user":
        return h("span", { class: "mention" }, `@${displayName(personById(e.user_id)) || e.user_id}`);
      case "channel":
        return h("span", { class: "channel-mention" }, `#${channelLabel(channelById(e.channel_id)) || e.channel_id}`);
      case "emoji":
        return e.unicode ? String.fromCodePoint(...e.unicode.split("-").map((c) => parseInt(c, 16))) : emoji(e.name);
      case "broadcast":
        return h("span", { class: "mention" }, `@${e.range}`);
      default:
        return e.text || "";
    }
  });
}

// --- messages ------------------------------------------------------------------------------------

function authorOf(message) {
  if (message.author) return message.author;
  const dir = state.directory;
  if (message.bot_id || (dir && dir.bot && message.user === dir.bot.id)) {
    return { id: message.user, name: (dir && dir.bot && dir.bot.name) || "Ember", is_bot: true };
  }
  return personById(message.user) || { id: message.user, name: message.username || message.user || "unknown" };
}

function avatar(author) {
  const dir = state.directory;
  if (author.is_bot && dir && dir.bot && author.id === dir.bot.id) {
    return h("div", { class: "avatar avatar-bot", "aria-hidden": "true" }, "🔥");
  }
  if (author.is_bot) return h("div", { class: "avatar avatar-other-bot", "aria-hidden": "true" }, "🤖");
  const name = displayName(author);
  let hash = 0;
  for (const c of String(author.id || name)) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return h("div", { class: `avatar avatar-${hash % 6}`, "aria-hidden": "true" }, name.slice(0, 1).toUpperCase());
}

/** opts: {channel, inThread, ephemeral} */
function renderMessage(message, opts) {
  const author = authorOf(message);
  const ctx = { channel: opts.channel, ts: message.ts };
  // A typed message carries its text again as a rich_text block: show the text (mrkdwn) instead.
  const allBlocks = message.blocks || [];
  const richOnly = allBlocks.length > 0 && allBlocks.every((b) => b.type === "rich_text") && Boolean(message.text);
  const blocks = richOnly ? [] : allBlocks;
  const showText = !blocks.some((b) => CONTENT_BLOCKS.has(b.type));
  const classes = ["message"];
  if (opts.ephemeral) classes.push("ephemeral");
  if (message.streaming) classes.push("streaming");
  if (message.subtype === "tombstone") classes.push("tombstone");
  const el = h("div", {
    class: classes.join(" "),
    dataset: { ts: message.ts, user: message.user || author.id || "", threadTs: message.thread_ts },
  });
  const meta = h(
    "div",
    { class: "message-meta" },
    h("span", { class: "message-author" }, displayName(author)),
    author.is_bot ? h("span", { class: "app-badge" }, "APP") : null,
    message.permalink
      ? h("a", { class: "message-time", href: message.permalink, target: "_blank", rel: "noopener", title: tsDate(message.ts).toLocaleString() }, timeLabel(message.ts))
      : h("span", { class: "message-time", title: tsDate(message.ts).toLocaleString() }, timeLabel(message.ts)),
  );
  const body = h("div", { class: "message-body" }, meta);
  if (opts.ephemeral) body.prepend(h("div", { class: "ephemeral-note" }, "👁 Only visible to you"));
  if (showText && (message.text || !message.streaming)) {
    body.append(h("div", { class: "message-text mrkdwn", html: renderMrkdwn(message.text || "") }));
  }
  if (!showText) {
    // Blocks stand in for the text: their leading content blocks are the message's text.
    let lead = 0;
    while (lead < blocks.length && LEAD_BLOCKS.has(blocks[lead].type)) lead += 1;
    const text = renderBlocks(blocks.slice(0, lead), ctx);
    text.classList.add("message-text");
    body.append(text);
    if (lead < blocks.length) body.append(renderBlocks(blocks.slice(lead), ctx));
  } else if (blocks.length) {
    body.append(renderBlocks(blocks, ctx));
  }
  if (message.streaming) {
    body.append(h("div", { class: "typing-indicator", "aria-label": "Ember is writing" }, h("span"), h("span"), h("span")));
  }
  if (!opts.ephemeral) {
    const reactions = reactionsRow(message, ctx);
    if (reactions) body.append(reactions);
    if (!opts.inThread && message.reply_count) {
      const users = (message.reply_users || []).slice(0, 3).map((id) => avatar(personById(id) || authorOf({ user: id })));
      body.append(
        h(
          "button",
          { type: "button", class: "reply-count", onclick: () => openThread(message.ts) },
          h("span", { class: "reply-avatars" }, users),
          h("span", { class: "reply-count-text" }, repliesLabel(message.reply_count)),
          message.latest_reply ? h("span", { class: "reply-latest" }, `Last reply ${timeLabel(message.latest_reply)}`) : null,
        ),
      );
    }
  }
  el.append(avatar(author), body);
  if (!opts.ephemeral && message.subtype !== "tombstone") el.append(messageActions(message, ctx, opts));
  return el;
}

function reactionsRow(message, ctx) {
  const reactions = message.reactions || [];
  if (!reactions.length) return null;
  const row = h("div", { class: "reactions" });
  for (const r of reactions) {
    const users = r.users || [];
    const mine = users.includes(state.me);
    row.append(
      h(
        "button",
        {
          type: "button",
          class: `reaction${mine ? " reacted" : ""}`,
          title: `${users.map((id) => displayName(personById(id))).join(", ")} reacted with :${r.name}:`,
          "aria-pressed": mine ? "true" : "false",
          dataset: { name: r.name },
          onclick: () => react(ctx, r.name),
        },
        h("span", { class: "reaction-emoji" }, emoji(r.name)),
        h("span", { class: "reaction-count" }, String(r.count ?? users.length)),
      ),
    );
  }
  const picker = h(
    "span",
    { class: "reaction-picker", hidden: true },
    ["+1", "-1"].map((name) =>
      h("button", { type: "button", class: "picker-option", dataset: { name }, title: `:${name}:`, onclick: () => react(ctx, name) }, emoji(name)),
    ),
  );
  const add = h("button", { type: "button", class: "add-reaction", title: "Add reaction", "aria-label": "Add reaction" }, "☺︎+");
  add.addEventListener("click", () => (picker.hidden = !picker.hidden));
  row.append(add, picker);
  return row;
}

function messageActions(message, ctx, opts) {
  const bar = h("div", { class: "message-actions" });
  for (const name of ["+1", "-1"]) {
    bar.append(
      h("button", { type: "button", class: "reaction-option", dataset: { name }, title: `React with :${name}:`, onclick: () => react(ctx, name) }, emoji(name)),
    );
  }
  const topLevel = !message.thread_ts || message.thread_ts === message.ts;
  if (!opts.inThread && topLevel) {
    bar.append(h("button", { type: "button", class: "reply-in-thread", title: "Reply in thread", onclick: () => openThread(message.ts) }, "💬"));
  }
  const shortcuts = (state.directory && state.directory.shortcuts) || [];
  if (shortcuts.length) {
    const menu = h(
      "div",
      { class: "shortcut-menu", hidden: true },
      shortcuts.map((s) =>
        h(
          "button",
          {
            type: "button",
            class: "shortcut-option",
            dataset: { callbackId: s.callback_id },
            onclick: () => {
              menu.hidden = true; // the menu closes as Slack's does
              runShortcut(ctx, message, s.callback_id);
            },
          },
          s.name,
        ),
      ),
    );
    const more = h("button", { type: "button", class: "more-actions", title: "More actions", "aria-label": "More actions" }, "⋯");
    more.addEventListener("click", () => (menu.hidden = !menu.hidden));
    bar.append(more, menu);
  }
  return bar;
}

/** Messages and ephemerals in ts order, with day dividers. */
function renderMessageList(container, messages, ephemerals, opts) {
  const items = [
    ...messages.map((m) => ({ m, ephemeral: false })),
    ...ephemerals.map((m) => ({ m, ephemeral: true })),
  ].sort((a, b) => compareTs(a.m.ts, b.m.ts));
  const nodes = [];
  let lastDay = opts.inThread ? tsDate(items[0]?.m.ts ?? 0).toDateString() : null;
  for (const { m, ephemeral } of items) {
    const day = tsDate(m.ts).toDateString();
    if (day !== lastDay) nodes.push(h("div", { class: "day-divider" }, h("span", {}, dayLabel(tsDate(m.ts)))));
    lastDay = day;
    nodes.push(renderMessage(m, { ...opts, ephemeral }));
  }
  return nodes;
}

function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 60;
}

function keepScroll(container, wasAtBottom, force) {
  if (wasAtBottom || force) container.scrollTop = container.scrollHeight;
}

function renderChannel(data, { force = false } = {}) {
  const key = JSON.stringify([data, state.directory && state.directory.people]);
  if (key === rendered.history && !force) return;
  rendered.history = key;
  state.history = data;
  const container = $("#messages");
  const atBottom = nearBottom(container) || state.stickToBottom.messages;
  state.stickToBottom.messages = false;
  const channel = channelById(state.channelId) || data.channel || {};
  const topLevel = (data.ephemerals || []).filter((e) => !e.thread_ts || e.thread_ts === e.ts);
  const nodes = renderMessageList(container, data.messages || [], topLevel, { channel: state.channelId, inThread: false });
  const intro = h(
    "div",
    { class: "channel-intro" },
    h("div", { class: "channel-intro-title" }, `${channelPrefix(channel)}${channelLabel(channel)}`),
    channel.kind === "im"
      ? "This is your direct message with Ember. Ask it anything; only you can see this conversation."
      : `This is the very beginning of the ${channelPrefix(channel).trim()}${channelLabel(channel)} channel. Mention @Ember to ask it something.`,
  );
  const prompts =
    channel.kind === "im" && (data.prompts || []).length
      ? [suggestedPrompts(data.prompts, state.channelId, () => (state.stickToBottom.messages = true))]
      : [];
  container.replaceChildren(intro, ...prompts, ...nodes);
  keepScroll(container, atBottom, force);
  focusPending(container);
}

/** The agent view's suggested prompts (in the DM with Ember, or its pane); a click asks that question
 * in `channel` and hands the posted message to `posted`. */
function suggestedPrompts(prompts, channel, posted) {
  return h(
    "div",
    { class: "suggested-prompts" },
    h("span", { class: "suggested-prompts-title" }, "Try asking"),
    prompts.map((p) =>
      h(
        "button",
        {
          type: "button",
          class: "prompt-chip",
          dataset: { message: p.message },
          onclick: async (event) => {
            event.currentTarget.disabled = true;
            try {
              const result = await apiPost("prompt", { user: state.me, channel, message: p.message });
              if (result && result.ok === false) toast(errorText(result));
              else posted(result);
            } catch (err) {
              toast(errorText(err.body));
            } finally {
              scheduleRefresh();
            }
          },
        },
        p.title,
      ),
    ),
  );
}

function renderThread(data, { force = false } = {}) {
  const key = JSON.stringify(data);
  if (key === rendered.thread && !force) return;
  rendered.thread = key;
  state.thread = data;
  const container = $("#thread-messages");
  const atBottom = nearBottom(container) || state.stickToBottom.thread;
  state.stickToBottom.thread = false;
  const opts = { channel: state.channelId, inThread: true };
  const parent = data.parent ? renderMessage(data.parent, { ...opts, ephemeral: false }) : null;
  if (parent) parent.classList.add("thread-parent");
  const replies = data.replies || [];
  const divider = replies.length ? h("div", { class: "thread-divider" }, h("span", {}, repliesLabel(replies.length))) : null;
  const nodes = renderMessageList(container, replies, data.ephemerals || [], opts).filter((n) => !n.classList.contains("day-divider"));
  container.replaceChildren(...[parent, divider, ...nodes].filter(Boolean));
  keepScroll(container, atBottom, force);
  focusPending(container);
}

/** Ember's pane: its suggested prompts and chats, or the open chat with its title and status. */
function renderAgent(data, chat, { force = false } = {}) {
  const viewing = channelById(state.channelId);
  const mark = viewing && viewing.kind === "private" ? "🔒 " : "#";
  const context = viewing && viewing.kind !== "im" && !state.home ? `Beside ${mark}${channelLabel(viewing)}` : "";
  const key = JSON.stringify([data, chat, context, state.directory && state.directory.people]);
  if (key === rendered.agent && !force) return;
  rendered.agent = key;
  state.agent.data = data;
  const pane = $("#agent-pane");
  const container = $("#agent-messages");
  const atBottom = nearBottom(container) || state.stickToBottom.agent;
  state.stickToBottom.agent = false;
  $(".agent-context", pane).textContent = context;
  $(".agent-back", pane).hidden = !chat;
  const status = $(".agent-status", pane);
  status.textContent = chat && chat.status ? `Ember ${chat.status}` : "";
  status.hidden = !(chat && chat.status);
  agentComposer.textarea.placeholder = chat ? "Reply…" : "Ask Ember…";
  if (chat) {
    const open = (data.chats || []).find((c) => c.ts === state.agent.threadTs);
    $(".agent-title", pane).textContent = chat.title || (open && open.title) || "Ember";
    const opts = { channel: data.dm, inThread: true };
    const replies = renderMessageList(container, chat.replies || [], chat.ephemerals || [], opts).filter(
      (n) => !n.classList.contains("day-divider"),
    );
    container.replaceChildren(renderMessage(chat.parent, { ...opts, ephemeral: false }), ...replies);
  } else {
    $(".agent-title", pane).textContent = "Ember";
    const intro = h("div", { class: "channel-intro" }, h("div", { class: "channel-intro-title" }, "Ember"), "Ask about your team's work, or catch up on a channel.");
    const prompts = (data.prompts || []).length
      ? suggestedPrompts(data.prompts, data.dm, (result) => result.ts && showAgentChat(result.ts))
      : null;
    const chats = (data.chats || []).length
      ? h(
          "div",
          { class: "agent-chats" },
          h("div", { class: "agent-chats-title" }, "Recent chats"),
          data.chats.map((c) =>
            h(
              "button",
              { type: "button", class: "agent-chat", dataset: { ts: c.ts }, onclick: () => showAgentChat(c.ts) },
              h("span", { class: "agent-chat-title", html: inline(c.title) }),
              h("span", { class: "agent-chat-meta" }, c.status ? `Ember ${c.status}` : timeLabel(c.ts)),
            ),
          ),
        )
      : null;
    container.replaceChildren(...[intro, prompts, chats].filter(Boolean));
  }
  keepScroll(container, atBottom, force);
}

function openAgent() {
  state.agent.open = true;
  rendered.agent = "";
  $("#agent-pane").hidden = false;
  $("#agent-toggle").classList.add("active");
  // Opening Ember beside a channel tells it what the person is looking at (app_context_changed).
  const viewing = channelById(state.channelId);
  if (viewing && viewing.kind !== "im" && !state.home) {
    apiPost("opened", { user: state.me, channel: viewing.id }).catch(() => {});
  }
  loadAgent(state.epoch, { force: true });
  agentComposer.textarea.focus();
}

function closeAgent() {
  state.agent = { open: false, threadTs: null, data: null };
  rendered.agent = "";
  $("#agent-pane").hidden = true;
  $("#agent-toggle").classList.remove("active");
}

/** Open one of the pane's chats (null: back to its prompts and list). */
function showAgentChat(ts) {
  state.agent.threadTs = ts;
  state.stickToBottom.agent = true;
  rendered.agent = "";
  agentComposer.clearError();
  loadAgent(state.epoch, { force: true });
}

function focusPending(container) {
  const pending = state.pendingFocus;
  if (!pending) return;
  const el = container.querySelector(`.message[data-ts="${CSS.escape(pending.ts)}"]`);
  if (!el) return;
  state.pendingFocus = null;
  el.classList.add("highlight");
  el.scrollIntoView({ block: "center" });
  setTimeout(() => el.classList.remove("highlight"), 2500);
}

// --- actions -------------------------------------------------------------------------------------

async function click(ctx, action, button) {
  if (!ctx) return false;
  if (button) button.disabled = true;
  try {
    const result = ctx.home
      ? await apiPost("home_click", { user: state.me, action })
      : await apiPost("click", { user: state.me, channel: ctx.channel, message_ts: ctx.ts, action });
    if (result && result.ok === false) {
      toast(errorText(result));
      return false;
    }
    return true;
  } catch (err) {
    toast(errorText(err.body));
    return false;
  } finally {
    if (button) button.disabled = false;
    scheduleRefresh();
  }
}

/** A message shortcut: Ember answers where Slack would show it (a summary in the thread, just for you;
 * a chat about the message in Ember's pane), so the page opens that place. */
async function runShortcut(ctx, message, callbackId) {
  try {
    const result = await apiPost("shortcut", { user: state.me, channel: ctx.channel, message_ts: ctx.ts, callback_id: callbackId });
    if (result && result.ok === false) {
      toast(errorText(result));
      return;
    }
    if (callbackId === "ember_ask_about") {
      if (state.agent.open) showAgentChat(null);
      else openAgent();
    } else if (ctx.channel === state.channelId) {
      openThread(message.thread_ts || message.ts, { focus: false });
    }
  } catch (err) {
    toast(errorText(err.body));
  } finally {
    scheduleRefresh();
  }
}

async function react(ctx, name) {
  try {
    const result = await apiPost("react", { user: state.me, channel: ctx.channel, ts: ctx.ts, name });
    if (result && result.ok === false) toast(errorText(result));
  } catch (err) {
    toast(errorText(err.body));
  }
  scheduleRefresh();
}

function setupComposer(form, target) {
  const textarea = $("textarea", form);
  const error = $(".error", form);
  let sending = false;
  const showError = (body) => {
    error.textContent = errorText(body);
    error.dataset.error = (body && body.error) || "";
    error.hidden = false;
  };
  const clearError = () => {
    error.hidden = true;
    error.textContent = "";
    delete error.dataset.error;
  };
  const autosize = () => {
    textarea.style.height = "auto";
    textarea.style.height = `${Math.min(textarea.scrollHeight, 240)}px`;
  };
  textarea.addEventListener("input", () => {
    autosize();
    if (!error.hidden) clearError();
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const where = target();
    if (!where || sending) return;
    const text = textarea.value;
    sending = true;
    form.classList.add("sending");
    clearError();
    try {
      const result = await apiPost("send", { user: state.me, channel: where.channel, text, thread_ts: where.thread_ts ?? null });
      if (result && result.ok === false) {
        showError(result);
      } else {
        if (textarea.value === text) textarea.value = "";
        autosize();
        where.afterSend?.(result);
      }
    } catch (err) {
      showError(err.body);
    } finally {
      sending = false;
      form.classList.remove("sending");
      scheduleRefresh();
    }
  });
  return { clearError, textarea };
}

// --- modals --------------------------------------------------------------------------------------

let shownModal = null; // {id, json}

function inputBlock(block, index) {
  const element = block.element || {};
  const blockId = block.block_id || `input_${index}`;
  const actionId = element.action_id || "value";
  const id = `input-${blockId}-${actionId}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const attrs = {
    id,
    class: "input-control",
    placeholder: element.placeholder ? plainText(element.placeholder) : undefined,
    maxlength: element.max_length,
    dataset: { actionId, elementType: element.type || "plain_text_input" },
  };
  const control = element.multiline ? h("textarea", { ...attrs, rows: 5 }) : h("input", { ...attrs, type: "text" });
  control.value = element.initial_value ?? "";
  return h(
    "div",
    { class: "block input-block", dataset: { blockId, blockType: "input" } },
    h("label", { class: "input-label", for: id }, plainText(block.label), block.optional ? h("span", { class: "input-optional" }, " (optional)") : null),
    control,
    block.hint ? h("div", { class: "input-hint" }, plainText(block.hint)) : null,
    h("div", { class: "input-error", role: "alert", hidden: true }),
  );
}

function modalValues(modal) {
  const values = {};
  for (const block of $$(".input-block", modal)) {
    const control = $("[data-action-id]", block);
    if (!control) continue;
    values[block.dataset.blockId] = {
      [control.dataset.actionId]: { type: control.dataset.elementType || "plain_text_input", value: control.value },
    };
  }
  return values;
}

function renderModal() {
  const root = $("#modal-root");
  const top = state.views.length ? state.views[state.views.length - 1] : null;
  if (!top) {
    if (shownModal) root.replaceChildren();
    shownModal = null;
    return;
  }
  // The view's `state` (what was typed, stored with a refused submission) is not a reason to redraw.
  const json = JSON.stringify({ ...top.view, state: undefined });
  if (shownModal && shownModal.id === top.id && shownModal.json === json) return;
  const old = root.querySelector(".modal");
  const typed = old && shownModal && shownModal.id === top.id ? modalValues(old) : null;
  shownModal = { id: top.id, json };
  const view = top.view || {};
  const body = h("form", { class: "modal-body", novalidate: true }, renderBlocks(view.blocks || [], null));
  const submit = view.submit ? h("button", { type: "button", class: "modal-submit" }, plainText(view.submit)) : null;
  const close = h("button", { type: "button", class: "modal-close" }, view.close ? plainText(view.close) : submit ? "Cancel" : "Close");
  const modal = h(
    "div",
    { class: "modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "modal-title", dataset: { viewId: top.id, callbackId: view.callback_id } },
    h(
      "header",
      { class: "modal-header" },
      h("h2", { class: "modal-title", id: "modal-title" }, plainText(view.title) || "Ember"),
      h("button", { type: "button", class: "modal-x icon-button", "aria-label": "Close", onclick: () => closeModal(top.id) }, "×"),
    ),
    body,
    h("div", { class: "modal-error", role: "alert", hidden: true }),
    h("footer", { class: "modal-footer" }, close, submit),
  );
  if (typed) {
    for (const [blockId, actions] of Object.entries(typed)) {
      for (const [actionId, value] of Object.entries(actions)) {
        const control = modal.querySelector(`.input-block[data-block-id="${CSS.escape(blockId)}"] [data-action-id="${CSS.escape(actionId)}"]`);
        if (control) control.value = value.value;
      }
    }
  }
  close.addEventListener("click", () => closeModal(top.id));
  submit?.addEventListener("click", () => submitModal(top.id, modal, submit));
  body.addEventListener("submit", (e) => {
    e.preventDefault();
    submit?.click();
  });
  modal.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeModal(top.id);
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit?.click();
  });
  root.replaceChildren(h("div", { class: "modal-backdrop" }, modal));
  if (modalErrors && modalErrors.viewId === top.id) showModalErrors(modal, modalErrors.result);
  const first = $(".input-control", modal);
  (first || submit || close).focus();
}

/** A refused submission's errors, kept so that a redraw of the same modal shows them again. */
let modalErrors = null;

function showModalErrors(modal, result) {
  const errors = result.errors || {};
  let placed = false;
  for (const [blockId, message] of Object.entries(errors)) {
    const slot = modal.querySelector(`.input-block[data-block-id="${CSS.escape(blockId)}"] .input-error`);
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
      placed = true;
    }
  }
  if (!placed) {
    const general = $(".modal-error", modal);
    general.textContent = Object.values(errors).join(" ") || errorText(result);
    general.hidden = false;
  }
}

async function submitModal(viewId, modal, button) {
  $$(".input-error", modal).forEach((e) => (e.hidden = true));
  const general = $(".modal-error", modal);
  general.hidden = true;
  modalErrors = null;
  button.disabled = true;
  try {
    const result = await apiPost("submit", { user: state.me, view_id: viewId, values: modalValues(modal) });
    if (result && result.ok === false) {
      modalErrors = { viewId, result };
      // The modal may have been redrawn while the submission was out: show them on the one there now.
      showModalErrors($("#modal-root .modal") || modal, result);
    }
  } catch (err) {
    modalErrors = { viewId, result: { errors: {}, ...(err.body || {}) } };
    general.textContent = errorText(err.body);
    general.hidden = false;
  } finally {
    button.disabled = false;
    await loadViews(state.epoch);
  }
}

async function closeModal(viewId) {
  try {
    await apiPost("close_view", { user: state.me, view_id: viewId });
  } catch (err) {
    toast(errorText(err.body));
  }
  await loadViews(state.epoch);
}

// --- status and training -------------------------------------------------------------------------

let watchingTraining = false;
let statusTimer = null;

function when(value) {
  if (value === undefined || value === null || value === "") return "";
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString([], { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
}

function trainingSummary(last) {
  if (!last) return "never";
  if (typeof last === "string") return last;
  const what = last.summary || last.result || last.outcome || last.status || last.state || "";
  const at = when(last.finished_at ?? last.ended_at ?? last.at ?? last.started_at ?? last.when);
  const parts = [what, at].filter(Boolean);
  return parts.length ? parts.join(", ") : JSON.stringify(last);
}

function renderStatus() {
  const status = state.status || {};
  const bar = $("#status-bar");
  $(".status-model", bar).textContent = `Model ${status.model_version ?? "—"}`;
  $(".status-queue", bar).textContent = `queue ${status.queue_depth ?? 0}`;
  $(".status-training", bar).textContent = `last training: ${trainingSummary(status.last_training)}`;
  const training = status.training || {};
  const button = $("#train-button");
  button.disabled = Boolean(training.running);
  button.textContent = training.running ? "Training…" : "Run nightly training now";
  const log = $("#training-log");
  if (training.running) watchingTraining = true;
  if (watchingTraining) {
    log.hidden = false;
    $(".training-lines", log).textContent = (training.lines || []).join("\n") || (training.running ? "Starting…" : "");
    $(".training-lines", log).scrollTop = 1e9;
    $(".training-result", log).textContent = training.running ? "Running…" : training.result || "";
    log.classList.toggle("running", Boolean(training.running));
  }
}

let statusLoading = false;

async function loadStatus() {
  if (statusLoading) return;
  statusLoading = true;
  try {
    state.status = await apiGet("status");
    renderStatus();
  } catch {
    // the next tick tries again
  } finally {
    statusLoading = false;
  }
  clearTimeout(statusTimer);
  const running = state.status && state.status.training && state.status.training.running;
  statusTimer = setTimeout(loadStatus, running ? STATUS_TRAINING_MS : STATUS_EVERY_MS);
}

async function startTraining() {
  const button = $("#train-button");
  button.disabled = true;
  watchingTraining = true;
  try {
    const result = await apiPost("train");
    if (result && result.ok === false) {
      toast(errorText(result));
    }
  } catch (err) {
    toast(errorText(err.body));
  }
  await loadStatus();
}

// --- loading -------------------------------------------------------------------------------------

async function loadDirectory(epoch) {
  const directory = await apiGet("directory", { user: state.me });
  if (epoch !== state.epoch) return false;
  state.directory = directory;
  const key = JSON.stringify(directory.channels);
  if (key !== rendered.directory) {
    rendered.directory = key;
    renderSidebar();
  }
  if (!channelById(state.channelId)) {
    const general = directory.channels.find((c) => channelLabel(c) === "general") || directory.channels[0];
    selectChannel(general ? general.id : null, { load: false });
  }
  return true;
}

async function loadHistory(epoch, options) {
  if (!state.channelId || state.home) return;
  try {
    const data = await apiGet("history", { user: state.me, channel: state.channelId });
    if (epoch === state.epoch) renderChannel(data, options);
  } catch (err) {
    if (epoch !== state.epoch) return;
    if (err.status === 403 || err.status === 404) {
      toast(errorText(err.body));
      rendered.directory = "";
      state.channelId = null;
      scheduleRefresh(); // the directory picks another channel
    }
  }
}

async function loadThread(epoch, options) {
  if (!state.threadTs) return;
  try {
    const data = await apiGet("thread", { user: state.me, channel: state.channelId, ts: state.threadTs });
    if (epoch === state.epoch) renderThread(data, options);
  } catch (err) {
    if (epoch === state.epoch && (err.status === 403 || err.status === 404)) closeThread();
  }
}

async function loadHome(epoch) {
  if (!state.home) return;
  try {
    const data = await apiGet("home", { user: state.me });
    if (epoch !== state.epoch || !state.home) return;
    const key = JSON.stringify(data.view);
    if (key === rendered.home) return;
    rendered.home = key;
    const body = data.view
      ? renderBlocks(data.view.blocks, { home: true })
      : h("p", { class: "home-loading" }, "Opening Ember's Home…");
    $("#messages").replaceChildren(h("div", { class: "home-view" }, body));
  } catch (err) {
    if (epoch === state.epoch) toast(errorText(err.body));
  }
}

async function loadAgent(epoch, options) {
  if (!state.agent.open) return;
  try {
    const data = await apiGet("agent", { user: state.me });
    const ts = state.agent.threadTs;
    const chat = ts ? await apiGet("thread", { user: state.me, channel: data.dm, ts }) : null;
    if (epoch === state.epoch && state.agent.open && ts === state.agent.threadTs) renderAgent(data, chat, options);
  } catch (err) {
    if (epoch !== state.epoch) return;
    if (err.status === 404 && state.agent.threadTs) showAgentChat(null); // that chat is gone
    else toast(errorText(err.body));
  }
}

async function loadViews(epoch) {
  try {
    const views = await apiGet("views", { user: state.me });
    if (epoch !== state.epoch) return;
    state.views = Array.isArray(views) ? views : views.views || [];
    renderModal();
  } catch {
    // keep what is shown
  }
}

let refreshing = null;
let refreshAgain = false;

/** Refetch everything the open view shows; at most one refresh runs, and one more follows if asked meanwhile. */
function scheduleRefresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      do {
        refreshAgain = false;
        try {
          await loadDirectory(state.epoch);
          const epoch = state.epoch; // loadDirectory may have moved to another channel
          await Promise.all([loadHistory(epoch), loadThread(epoch), loadViews(epoch), loadHome(epoch), loadAgent(epoch)]);
        } catch (err) {
          console.warn("refresh failed", err);
        }
      } while (refreshAgain);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

// --- navigation ----------------------------------------------------------------------------------

function renderSidebar() {
  const list = $("#channel-list");
  const channels = (state.directory && state.directory.channels) || [];
  const item = (channel) =>
    h(
      "button",
      {
        type: "button",
        class: `sidebar-item${channel.id === state.channelId && !state.home ? " active" : ""}`,
        dataset: { channelId: channel.id, channelName: channelLabel(channel), kind: channel.kind },
        onclick: () => selectChannel(channel.id),
      },
      channel.kind === "im"
        ? h("span", { class: "sidebar-icon dm-icon", "aria-hidden": "true" }, "🔥")
        : h("span", { class: "sidebar-icon", "aria-hidden": "true" }, channel.kind === "private" ? "🔒" : "#"),
      h("span", { class: "sidebar-label" }, channelLabel(channel)),
    );
  const section = (title, items) =>
    items.length ? h("section", { class: "sidebar-section" }, h("h3", { class: "sidebar-heading" }, title), items.map(item)) : null;
  const home = h(
    "button",
    {
      type: "button",
      class: `sidebar-item home-item${state.home ? " active" : ""}`,
      dataset: { home: "true" },
      onclick: () => selectHome(),
    },
    h("span", { class: "sidebar-icon", "aria-hidden": "true" }, "🏠"),
    h("span", { class: "sidebar-label" }, "Ember · Home"),
  );
  list.replaceChildren(
    h("section", { class: "sidebar-section" }, home),
    ...[
      section("Channels", channels.filter((c) => c.kind !== "im")),
      section("Direct messages", channels.filter((c) => c.kind === "im")),
    ].filter(Boolean),
  );
}

function selectHome() {
  state.epoch += 1;
  state.home = true;
  rendered.home = "";
  closeThread();
  $$(".sidebar-item").forEach((el) => el.classList.toggle("active", el.dataset.home === "true"));
  $("#channel-title").textContent = "Ember";
  $("#channel-subtitle").textContent = "Home";
  $("#agent-toggle").hidden = true;
  $("#composer").hidden = true;
  $("#messages").replaceChildren(h("div", { class: "home-view" }, h("p", { class: "home-loading" }, "Opening Ember's Home…")));
  const epoch = state.epoch;
  apiPost("open_home", { user: state.me })
    .then(() => loadHome(epoch))
    .catch((err) => toast(errorText(err.body)));
}

function leaveHome() {
  if (!state.home) return false;
  state.home = false;
  rendered.home = "";
  $("#composer").hidden = false;
  return true;
}

function selectChannel(id, { load = true } = {}) {
  if (leaveHome()) {
    state.epoch += 1;
    rendered.history = "";
    $("#messages").replaceChildren();
  }
  if (id !== state.channelId) {
    state.epoch += 1;
    state.channelId = id;
    rendered.history = "";
    closeThread();
    composer.clearError();
    $("#messages").replaceChildren();
  }
  const channel = channelById(id);
  $$(".sidebar-item").forEach((el) => el.classList.toggle("active", el.dataset.channelId === id));
  $("#channel-title").textContent = channel ? `${channelPrefix(channel)}${channelLabel(channel)}` : "";
  $("#channel-subtitle").textContent = channel && channel.kind === "im" ? "Ember · APP" : "";
  composer.textarea.placeholder = channel
    ? channel.kind === "im"
      ? "Message Ember"
      : `Message ${channelPrefix(channel).trim()}${channelLabel(channel)}`
    : "Message";
  $(".thread-channel").textContent = channel ? `${channelPrefix(channel)}${channelLabel(channel)}` : "";
  $("#agent-toggle").hidden = !channel || channel.kind === "im";
  if (load) loadHistory(state.epoch, { force: true });
  if (load) composer.textarea.focus();
  // Opening the DM with Ember opens its messages tab; with Ember open beside the channel, Slack tells
  // it what the person now looks at.
  const tell = channel && (channel.kind === "im" || state.agent.open);
  if (load && tell) apiPost("opened", { user: state.me, channel: id }).catch(() => {});
  if (state.agent.open) loadAgent(state.epoch);
}

function openThread(ts, { focus = true } = {}) {
  state.threadTs = ts;
  rendered.thread = "";
  $("#thread-pane").hidden = false;
  document.body.classList.add("thread-open");
  $("#thread-messages").replaceChildren();
  threadComposer.clearError();
  loadThread(state.epoch, { force: true });
  if (focus) threadComposer.textarea.focus();
}

function closeThread() {
  state.threadTs = null;
  state.thread = null;
  rendered.thread = "";
  $("#thread-pane").hidden = true;
  document.body.classList.remove("thread-open");
}

/** A permalink (…/archives/<channel>/p<digits>[?thread_ts=…]) opens in the page instead. */
function followPermalink(url) {
  const match = url.pathname.match(/\/archives\/([A-Z0-9]+)\/p(\d{7,})$/);
  if (!match || !channelById(match[1])) return false;
  const digits = match[2];
  const ts = `${digits.slice(0, -6)}.${digits.slice(-6)}`;
  const threadTs = url.searchParams.get("thread_ts");
  if (match[1] !== state.channelId) selectChannel(match[1]);
  state.pendingFocus = { ts };
  if (threadTs) openThread(threadTs, { focus: false });
  else focusPending($("#messages"));
  return true;
}

function personFromUrl(people) {
  const wanted = new URLSearchParams(location.search).get("as");
  if (!wanted) return null;
  const w = wanted.toLowerCase();
  return (
    people.find((p) => p.id.toLowerCase() === w || (p.name || "").toLowerCase() === w) ||
    people.find((p) => (p.real_name || "").toLowerCase().split(/\s+/)[0] === w) ||
    null
  );
}

async function switchUser(id, { initial = false } = {}) {
  const person = state.people.find((p) => p.id === id);
  if (!person) return;
  state.me = id;
  state.epoch += 1;
  localStorage.setItem(STORAGE_KEY, id);
  const url = new URL(location.href);
  url.searchParams.set("as", person.name || person.id);
  history.replaceState(null, "", url);
  document.body.dataset.user = id;
  $("#user-switcher").value = id;
  closeThread();
  closeAgent();
  leaveHome();
  state.views = [];
  renderModal();
  rendered.history = "";
  rendered.directory = "";
  $("#messages").replaceChildren();
  const keep = initial ? null : state.channelId && channelById(state.channelId);
  state.channelId = null;
  await loadDirectory(state.epoch);
  const stillVisible = keep && channelById(keep.id);
  if (stillVisible) selectChannel(keep.id, { load: false });
  selectChannel(state.channelId, { load: false });
  await scheduleRefresh();
}

// --- start ---------------------------------------------------------------------------------------

const composer = setupComposer($("#composer"), () =>
  state.channelId ? { channel: state.channelId, thread_ts: null, afterSend: () => (state.stickToBottom.messages = true) } : null,
);
const agentComposer = setupComposer($("#agent-composer"), () =>
  state.agent.data
    ? {
        channel: state.agent.data.dm,
        thread_ts: state.agent.threadTs,
        // A question asked from the pane's list opens its own chat (each one is a thread).
        afterSend: (result) => (state.agent.threadTs || !result.ts ? (state.stickToBottom.agent = true) : showAgentChat(result.ts)),
      }
    : null,
);
const threadComposer = setupComposer($("#thread-composer"), () =>
  state.channelId && state.threadTs
    ? { channel: state.channelId, thread_ts: state.threadTs, afterSend: () => (state.stickToBottom.thread = true) }
    : null,
);

function connectEvents() {
  const dot = $(".status-connection");
  const source = new EventSource("/playground/events");
  source.addEventListener("change", () => {
    scheduleRefresh();
    loadStatus();
  });
  source.addEventListener("open", () => {
    dot.classList.add("live");
    dot.title = "Live updates: connected";
  });
  source.addEventListener("error", () => {
    dot.classList.remove("live");
    dot.title = "Live updates: reconnecting…";
  });
}

async function start() {
  state.people = await apiGet("people");
  const switcher = $("#user-switcher");
  switcher.replaceChildren(
    ...state.people.map((p) => h("option", { value: p.id, dataset: { name: p.name } }, displayName(p))),
  );
  switcher.addEventListener("change", () => switchUser(switcher.value));
  const stored = localStorage.getItem(STORAGE_KEY);
  const chosen = personFromUrl(state.people) || state.people.find((p) => p.id === stored) || state.people[0];

  $(".thread-close").addEventListener("click", closeThread);
  $("#agent-toggle").addEventListener("click", () => (state.agent.open ? closeAgent() : openAgent()));
  $(".agent-close").addEventListener("click", closeAgent);
  $(".agent-back").addEventListener("click", () => showAgentChat(null));
  $(".agent-new").addEventListener("click", () => {
    showAgentChat(null);
    agentComposer.textarea.focus();
  });
  $("#train-button").addEventListener("click", startTraining);
  $(".training-log-close").addEventListener("click", () => {
    watchingTraining = false;
    $("#training-log").hidden = true;
  });
  document.addEventListener("click", (event) => {
    const anchor = event.target.closest("a");
    if (!anchor) return;
    if (anchor.classList.contains("channel-mention")) {
      event.preventDefault();
      if (channelById(anchor.dataset.channelId)) selectChannel(anchor.dataset.channelId);
      return;
    }
    if (anchor.href && followPermalink(new URL(anchor.href, location.href))) event.preventDefault();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !state.views.length && state.threadTs) closeThread();
  });

  if (chosen) await switchUser(chosen.id, { initial: true });
  connectEvents();
  loadStatus();
  document.body.dataset.ready = "true";
}

start().catch((err) => {
  console.error(err);
  toast(`The playground could not load: ${err.message}`);
});
