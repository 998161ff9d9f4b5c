// The web chat page's script (bot/web/chat.html, a template Teller fills); no inline script: the CSP allows none.
(() => {
  const log = document.getElementById("log");
  const form = document.getElementById("form");
  const input = document.getElementById("text");
  // Who the customer is lives in the session cookie the server set with this page (HttpOnly: this
  // script never sees it); every call below sends it, and names no customer itself.
  localStorage.removeItem("teller-user-id");  // what older versions of the page kept
  const ENDED = "Your session has ended. Reload the page to start a new conversation.";

  function bubble(text, who) {
    const div = document.createElement("div");
    div.className = "msg " + who;
    div.textContent = text;
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
    return div;
  }

  // A row of buttons under a reply; pressing one disables the row and calls onPress(choice).
  function buttons(div, choices, className, onPress) {
    const box = document.createElement("div");
    box.className = className;
    for (const choice of choices) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = choice.label;
      b.dataset.value = choice.value;
      b.addEventListener("click", () => {
        box.querySelectorAll("button").forEach(x => x.disabled = true);
        onPress(choice);
      });
      box.appendChild(b);
    }
    div.appendChild(box);
  }

  async function sendFeedback(div, messageId, choice) {
    const helpful = choice.helpful === true;
    const res = await fetch("/api/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message_id: messageId, helpful }) });
    const note = document.createElement("div");
    note.className = "thanks";
    note.textContent = res.ok ? (helpful ? "Thanks for the feedback!" : "Sorry about that. We'll use this to improve.")
                     : res.status === 409 ? "You have rated this answer already."
                     : res.status === 401 ? ENDED : "Feedback could not be saved.";
    div.appendChild(note);
  }

  function newId() {
    return (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
      : Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  // One id per message for all its attempts: a retry (network error, 5xx) that reaches another
  // replica is answered with the stored reply, never twice. A 429 is not retried: its message says
  // how long to wait.
  async function post(body) {
    let res;
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        res = await fetch("/api/messages", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body) });
        if (res.status < 500) return res;
      } catch (e) {
        if (attempt === 3) throw e;
      }
      await new Promise(r => setTimeout(r, 500 * 2 ** attempt));
    }
    return res;
  }

  async function send(text, shown) {
    bubble(shown || text, "me");
    try {
      const res = await post({ text, client_message_id: newId() });
      if (!res.ok) {
        const err = await res.json().catch(() => ({}));
        const detail = res.status === 401 ? ENDED : typeof err.detail === "string" ? err.detail
                     : "Something went wrong. Please try again.";
        bubble(detail, "bot error");
        return;
      }
      const data = await res.json();
      // (The reply says a person was asked for: a handoff closed before the first poll, one the
      // ops channel refused, say, is still told.)
      if (data.route === "handoff" || data.route === "human") { seenOpen = true; watchHandoff(data.message_id); }
      if (!data.reply) return;  // passed to the person handling the conversation
      const div = bubble(data.reply, "bot");
      div.dataset.route = data.route;
      div.dataset.messageId = data.message_id;
      const feedback = data.choices.filter(c => c.kind === "feedback");
      const others = data.choices.filter(c => c.kind !== "feedback");
      if (others.length) buttons(div, others, "choices", c => send(c.value, c.label));
      if (feedback.length) buttons(div, feedback, "feedback", c => sendFeedback(div, data.message_id, c));
    } catch (e) {
      bubble("Teller can't be reached right now. Please try again in a moment.", "bot error");
    }
  }

  // While a person handles the conversation, their messages are fetched every few seconds.
  let lastSeen = null, watching = null, seenOpen = false;
  function watchHandoff(messageId) {
    if (lastSeen === null) lastSeen = messageId;
    if (watching) return;
    watching = setInterval(async () => {
      const query = new URLSearchParams();
      if (lastSeen) query.set("after", lastSeen);
      const res = await fetch("/api/messages?" + query).catch(() => null);
      if (res && res.status === 422) { lastSeen = null; return; }  // not a message id: from the start
      if (!res || !res.ok) return;
      const data = await res.json();
      for (const m of data.messages) {
        bubble(m.reply, "bot human");
        lastSeen = m.message_id;
      }
      if (data.handoff_open) seenOpen = true;
      else {  // closed by the operator (or no one is on duty to take it: nothing to wait for)
        clearInterval(watching);
        watching = null;
        lastSeen = null;
        if (seenOpen && data.closed_notice) bubble(data.closed_notice, "bot");
        seenOpen = false;
      }
    }, 3000);
  }

  // What is kept, as the bank words it (TELLER_PRIVACY_NOTICE), with the button that removes it.
  const notice = document.getElementById("notice");
  if (notice && notice.dataset.notice) {
    const erasable = document.getElementById("forget")?.dataset.erasure === "on";
    notice.textContent = notice.dataset.notice + (erasable ? " “Delete my conversation” removes it." : "");
    notice.hidden = false;
  }

  // "Delete my conversation": everything Teller stored about this customer is erased (the server
  // may refuse: a customer the bank has verified asks the bank instead).
  const forget = document.getElementById("forget");
  if (forget && forget.dataset.erasure === "on") {
    forget.hidden = false;
    forget.addEventListener("click", async () => {
      if (!window.confirm("Delete this conversation and everything Teller stored about it? This cannot be undone.")) return;
      const res = await fetch("/api/conversation", { method: "DELETE" }).catch(() => null);
      if (res && res.ok) {
        const data = await res.json().catch(() => ({}));
        if (watching) { clearInterval(watching); watching = null; }
        lastSeen = null; seenOpen = false;
        log.replaceChildren();
        bubble(["Your conversation has been deleted.", ...(data.kept || [])].join("\n"), "bot");
        return;
      }
      const err = res ? await res.json().catch(() => ({})) : {};
      bubble(res && res.status === 401 ? ENDED : typeof err.detail === "string" ? err.detail
             : "The conversation could not be deleted. Please try again.", "bot error");
    });
  }

  // A page loaded again during a handoff: what the operators said in it, and polling on (a
  // reviewer's finding: the page polled only after the customer's next message, and every
  // operator message before it was lost to it).
  async function resume() {
    const res = await fetch("/api/messages").catch(() => null);
    if (!res || !res.ok) return;
    const data = await res.json().catch(() => null);
    if (!data || !data.handoff_open || watching) return;
    for (const m of data.messages) {
      bubble(m.reply, "bot human");
      lastSeen = m.message_id;
    }
    seenOpen = true;
    watchHandoff(lastSeen);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });
  bubble(log.dataset.greeting || "Hello! I'm Teller. How can I help?", "bot");
  resume();
  input.focus();
})();
