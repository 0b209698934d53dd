// aeolus chat demo: one channel, members, history, live messages, typing.
// Speaks the default "aeolus" profile (etc/profiles/aeolus.json) over Socket.IO.
// All user-supplied text goes into the page through textContent only.
'use strict';

(() => {
  const HISTORY = 50;             // messages asked for on join
  const TYPING_THROTTLE = 2000;   // ms between typing:start while typing
  const TYPING_FALLBACK = 8000;   // drop a typer we heard nothing from (server expires at 6 s)
  const REQUEST_TIMEOUT = 5000;   // ms to wait for an ack

  const $ = (id) => document.getElementById(id);
  const ui = {
    join: $('join'), name: $('name'), channel: $('channel'), transport: $('transport'),
    connect: $('connect'), status: document.querySelector('[data-testid="status"]'),
    transportName: document.querySelector('[data-testid="transport-name"]'),
    notice: $('notice'), title: $('room-title'), messages: $('messages'), typing: $('typing'),
    composer: $('composer'), input: $('message-input'), send: $('send'),
    members: $('members'), memberCount: $('member-count'),
  };

  // Optional prefill: ?name=…&channel=…&transport=polling|websocket
  const params = new URLSearchParams(location.search);
  ui.name.value = params.get('name') || '';
  ui.channel.value = params.get('channel') || 'general';
  if ([...ui.transport.options].some((o) => o.value === params.get('transport'))) {
    ui.transport.value = params.get('transport');
  }
  // the daemon that serves this page (opened from a file, assume one on the default port)
  const server = location.protocol.startsWith('http') ? location.origin : 'http://127.0.0.1:3000';

  let socket = null;
  let myId = null;
  let myName = '';
  let channel = '';
  let joined = false;
  let typingActive = false;
  let lastTypingSent = 0;
  let counter = 0;
  const members = new Map();  // userId -> name given by the server
  const names = new Map();    // userId -> display name learned from message metadata
  const typers = new Map();   // userId -> fallback timer
  const seen = new Set();     // message ids already shown

  // ---- small helpers ------------------------------------------------------

  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  const hue = (s) => {
    let h = 0;
    for (const c of String(s)) h = (h * 31 + c.codePointAt(0)) % 360;
    return h;
  };

  const displayName = (userId, fallback) =>
    (userId === myId ? myName : names.get(userId)) || fallback || members.get(userId) || userId || '?';

  const clock = (ts) => {
    const d = new Date(ts);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  };

  const errorText = (err) => {
    if (!err) return 'unknown error';
    if (typeof err !== 'object') return String(err);
    let s = err.message || err.code || 'error';
    if (err.retryAfter) s += ` (retry in ${err.retryAfter} s)`;
    return s;
  };

  function setStatus(state, text = state) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function setTransport(name) {
    ui.transportName.textContent = name || '';
    ui.transportName.hidden = !name;
  }

  let noticeTimer = null;
  function notice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, 8000);
  }

  /** Emit with an ack; always resolves to {ok, ...} (a timeout becomes an error). */
  async function request(event, data) {
    try {
      const res = await socket.timeout(REQUEST_TIMEOUT).emitWithAck(event, data);
      return res && typeof res === 'object' ? res : { ok: false, error: { message: 'malformed reply' } };
    } catch {
      return { ok: false, error: { code: 'timeout', message: `no answer to ${event}` } };
    }
  }

  // ---- rendering ----------------------------------------------------------

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 40;
  }

  function append(li) {
    const stick = nearBottom();
    ui.messages.append(li);
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function avatar(userId, label) {
    const a = make('span', 'avatar', (label || '?').trim().charAt(0).toUpperCase() || '?');
    a.style.setProperty('--hue', hue(userId));
    a.setAttribute('aria-hidden', 'true');
    return a;
  }

  /** Show a chat message; returns its element (or null when it was already shown). */
  function addMessage(m, { pending = false } = {}) {
    if (m.id !== undefined && seen.has(String(m.id))) return null;
    if (m.id !== undefined) seen.add(String(m.id));
    const mine = m.senderId === myId;
    const who = mine ? myName : displayName(m.senderId, m.metadata?.name || m.senderName);
    const li = make('li', 'message' + (mine ? ' mine' : '') + (pending ? ' pending' : ''));
    li.dataset.testid = 'message';
    if (m.id !== undefined) li.dataset.id = String(m.id);
    const head = make('div', 'meta');
    head.append(make('span', 'author', who), make('time', 'time', clock(m.timestamp)));
    if (m.timestamp) head.lastChild.dateTime = m.timestamp;
    const body = make('div', 'body');
    body.append(head, make('p', 'content', typeof m.content === 'string' ? m.content : JSON.stringify(m.content)));
    li.append(avatar(m.senderId, who), body);
    append(li);
    return li;
  }

  /** A "… joined/left" line; the name is updated once the user's display name is known. */
  function addSystem(userId, fallback, what) {
    const li = make('li', 'system');
    li.dataset.testid = 'system';
    const who = make('span', 'user-ref', displayName(userId, fallback));
    who.dataset.userId = userId;
    li.append(who, ` ${what}`);
    append(li);
  }

  function renderMembers() {
    const list = [...members.keys()]
      .map((id) => ({ id, name: displayName(id) }))
      .sort((a, b) => (a.id === myId ? -1 : b.id === myId ? 1 : a.name.localeCompare(b.name)));
    ui.members.replaceChildren(...list.map(({ id, name }) => {
      const li = make('li', 'member');
      li.dataset.testid = 'member';
      li.dataset.userId = id;
      const text = make('span', 'who');
      text.append(make('span', 'member-name', name));
      if (id === myId) text.append(make('span', 'tag', 'you'));
      if (name !== id) text.append(make('span', 'member-id', id));
      li.append(avatar(id, name), text);
      return li;
    }));
    ui.memberCount.textContent = String(members.size);
  }

  function renderTyping() {
    const who = [...typers.keys()].map((id) => displayName(id));
    let text = '';
    if (who.length === 1) text = `${who[0]} is typing…`;
    else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
    else if (who.length > 2) text = `${who.length} people are typing…`;
    ui.typing.textContent = text;
  }

  function setTyper(userId, on) {
    clearTimeout(typers.get(userId));
    if (on) {
      typers.set(userId, setTimeout(() => setTyper(userId, false), TYPING_FALLBACK));
    } else {
      typers.delete(userId);
    }
    renderTyping();
  }

  function clearTypers() {
    for (const t of typers.values()) clearTimeout(t);
    typers.clear();
    renderTyping();
  }

  /** Remember the display name a sender put in its message metadata. */
  function learnName(m) {
    const n = m?.metadata?.name;
    if (typeof n !== 'string' || !n.trim() || m.senderId === myId) return;
    const name = n.trim().slice(0, 40);
    if (names.get(m.senderId) === name) return;
    names.set(m.senderId, name);
    for (const e of ui.messages.querySelectorAll(`.user-ref[data-user-id="${CSS.escape(String(m.senderId))}"]`)) {
      e.textContent = name;
    }
    if (members.has(m.senderId)) renderMembers();
    if (typers.has(m.senderId)) renderTyping();
  }

  function setJoined(on) {
    joined = on;
    ui.input.disabled = !on;
    ui.send.disabled = !on;
    if (!on) {
      typingActive = false;
      lastTypingSent = 0;
      clearTypers();
    }
  }

  function setFormLocked(locked) {
    ui.name.disabled = locked;
    ui.channel.disabled = locked;
    ui.transport.disabled = locked;
    ui.connect.textContent = locked ? 'Disconnect' : 'Connect';
    ui.connect.classList.toggle('secondary', locked);
  }

  // ---- typing -------------------------------------------------------------

  function onInput() {
    if (!joined) return;
    if (!ui.input.value) { stopTyping(); return; }
    const now = Date.now();
    if (now - lastTypingSent >= TYPING_THROTTLE) {
      lastTypingSent = now;
      typingActive = true;
      socket.emit('typing:start', { channelId: channel });
    }
  }

  function stopTyping() {
    if (!typingActive) return;
    typingActive = false;
    lastTypingSent = 0;
    if (socket?.connected) socket.emit('typing:stop', { channelId: channel });
  }

  // ---- connection ---------------------------------------------------------

  async function onConnect() {
    myId = socket.id;
    setTransport(socket.io.engine?.transport?.name);
    setStatus('joining', 'joining…');
    const res = await request('channel:join', { channelId: channel, history: HISTORY });
    if (!socket?.connected) return;
    if (!res.ok) {
      setStatus('error', 'join failed');
      notice(`Could not join #${channel}: ${errorText(res.error)}`);
      return;
    }
    members.clear();
    for (const m of res.members || []) members.set(m.userId, m.name);
    for (const m of res.history || []) learnName(m);
    renderMembers();
    for (const m of res.history || []) addMessage(m);
    setJoined(true);
    setStatus('connected');
    ui.input.focus();
  }

  function connect() {
    myName = ui.name.value.trim();
    channel = ui.channel.value.trim();
    if (!myName || !channel) return;
    if (typeof io !== 'function') {
      notice('The Socket.IO client (vendor/socket.io.min.js) is missing: run demo/setup.sh.');
      return;
    }
    const opts = { forceNew: true, auth: { name: myName }, reconnectionDelayMax: 5000, closeOnBeforeunload: true };
    if (ui.transport.value !== 'default') opts.transports = [ui.transport.value];

    ui.messages.replaceChildren();
    seen.clear();
    members.clear();
    renderMembers();
    ui.title.textContent = `#${channel}`;
    document.title = `#${channel} · aeolus chat demo`;
    setFormLocked(true);
    setStatus('connecting', 'connecting…');

    socket = io(server, opts);
    socket.io.on('open', () => {
      const engine = socket.io.engine;
      setTransport(engine.transport.name);
      engine.on('upgrade', (t) => setTransport(t.name));
    });
    socket.on('connect', onConnect);
    socket.on('disconnect', (reason) => {
      setJoined(false);
      setTransport('');
      if (socket.active) {
        setStatus('reconnecting', 'reconnecting…');
        members.clear();
        renderMembers();
      }
    });
    socket.on('connect_error', (err) => {
      setStatus(socket.active ? 'reconnecting' : 'error', socket.active ? 'reconnecting…' : 'connection refused');
      notice(`Connection failed: ${err.message}`);
    });

    socket.on('message:received', (m) => {
      if (!m || m.channelId !== channel) return;
      learnName(m);
      if (typers.has(m.senderId)) setTyper(m.senderId, false);
      addMessage(m);
    });
    socket.on('user:joined', (u) => {
      if (!u || u.channelId !== channel || members.has(u.userId)) return;
      members.set(u.userId, u.name);
      renderMembers();
      addSystem(u.userId, u.name, 'joined');
    });
    socket.on('user:left', (u) => {
      if (!u || u.channelId !== channel || !members.has(u.userId)) return;
      addSystem(u.userId, members.get(u.userId), 'left');
      members.delete(u.userId);
      if (typers.has(u.userId)) setTyper(u.userId, false);
      renderMembers();
    });
    socket.on('typing:user', (t) => {
      if (!t || t.channelId !== channel || t.userId === myId) return;
      setTyper(t.userId, Boolean(t.isTyping));
    });
    socket.on('error', (e) => notice(`Server: ${errorText(e)}`));
  }

  function disconnect() {
    stopTyping();
    if (socket) {
      socket.removeAllListeners();
      socket.io.removeAllListeners?.();
      socket.disconnect();
      socket = null;
    }
    setJoined(false);
    setTransport('');
    setStatus('disconnected');
    setFormLocked(false);
    members.clear();
    renderMembers();
  }

  async function send(event) {
    event.preventDefault();
    const content = ui.input.value.trim();
    if (!content || !joined) return;
    ui.input.value = '';
    stopTyping();
    const clientMessageId = `${myId}-${++counter}`;
    const metadata = { name: myName };
    const li = addMessage({
      channelId: channel, senderId: myId, content, timestamp: new Date().toISOString(), clientMessageId, metadata,
    }, { pending: true });
    const res = await request('message:send', { channelId: channel, content, clientMessageId, metadata });
    if (res.ok) {
      li.classList.remove('pending');
      if (res.id !== undefined) {
        li.dataset.id = String(res.id);
        seen.add(String(res.id));
      }
      if (res.timestamp) li.querySelector('time').textContent = clock(res.timestamp);
    } else {
      li.classList.replace('pending', 'failed');
      li.title = `not sent: ${errorText(res.error)}`;
      notice(`Message not sent: ${errorText(res.error)}`);
    }
  }

  ui.join.addEventListener('submit', (e) => {
    e.preventDefault();
    if (socket) disconnect(); else connect();
  });
  ui.composer.addEventListener('submit', send);
  ui.input.addEventListener('input', onInput);
  ui.input.addEventListener('blur', stopTyping);
  setTransport('');
  if (!ui.name.value) ui.name.focus();
})();
