// skiff dashboard: draws what the nodes report, sample by sample, from /v1/events.
// It computes no Raft state: every role, term and index shown is a node's own /v1/status.
// The only arithmetic is for display: picking, in each sample, the node that says it leads
// (with the highest term, should two say so across a partition), and scaling the charts.
'use strict';

/** How much history the charts show. */
const CHART_WINDOW_MS = 5 * 60 * 1000;
/** How many samples to keep (ten minutes at one a second). */
const MAX_SAMPLES = 600;
/** How many lines the list of changes keeps. */
const MAX_EVENTS = 100;
/** The symbol that goes with each role, so that roles read without colour too. */
const ROLE_SYMBOLS = {
  leader: '★',
  follower: '●',
  candidate: '◆',
  'pre-candidate': '◇',
  unreachable: '✕',
};

const state = {
  settings: null,
  samples: [],
  lastSequence: 0,
  markers: [],        // {t, text}: leader changes, for the charts
  previous: new Map(), // node id -> the last thing said about it, for the list of changes
  leader: undefined,   // the leader of the last sample: {id, term} or null
  rows: new Map(),     // node id -> its table row's cells
  links: new Map(),    // "a-b" -> the links table's row for nodes a < b
};

const $ = (id) => document.getElementById(id);

function connect() {
  const source = new EventSource('/v1/events');
  source.addEventListener('open', () => setConnection('live', 'Live: updated every second.'));
  source.addEventListener('error', () =>
    setConnection('lost', 'Connection lost: reconnecting… (the figures below are the last received)'));
  source.addEventListener('hello', (event) => {
    const hello = JSON.parse(event.data);
    // A hello starts a new stream, perhaps from a restarted server whose numbering restarts.
    state.settings = hello.settings;
    state.samples = [];
    state.lastSequence = 0;
    state.markers = [];
    state.leader = undefined;
    applySettings(hello.settings);
    for (const sample of hello.history) add(sample, false);
    render();
  });
  source.addEventListener('sample', (event) => {
    add(JSON.parse(event.data), true);
    render();
  });
}

function setConnection(kind, text) {
  const element = $('connection');
  element.dataset.state = kind;
  element.textContent = text;
}

function applySettings(settings) {
  $('title').textContent = settings.served_by === null
    ? `${settings.title} dashboard`
    : `dashboard, served by ${settings.title}`;
  document.title = `skiff ${settings.title}`;
  document.body.classList.toggle('demo', settings.process_actions.length > 0);
}

/** The node that reports itself leader, with the highest term; null if none does. */
function leaderOf(sample) {
  let leader = null;
  for (const node of sample.nodes) {
    const status = node.status;
    if (status && status.role === 'leader' && (!leader || status.term > leader.term)) {
      leader = { id: node.id, term: status.term, node };
    }
  }
  return leader;
}

function add(sample, live) {
  if (sample.sequence <= state.lastSequence) return;
  state.lastSequence = sample.sequence;
  state.samples.push(sample);
  if (state.samples.length > MAX_SAMPLES) state.samples.shift();

  const leader = leaderOf(sample);
  const before = state.leader;
  const changed = before === undefined
    ? leader !== null
    : (before === null) !== (leader === null) || (leader && (leader.id !== before.id || leader.term !== before.term));
  if (changed) {
    const text = leader ? `node ${leader.id} leads term ${leader.term}` : 'no node reports itself leader';
    state.markers.push({ t: sample.unix_ms, text, leader: leader ? leader.id : null });
    note(sample.unix_ms, text);
  }
  state.leader = leader;

  for (const node of sample.nodes) {
    const said = describe(node);
    const previous = state.previous.get(node.id);
    if (previous !== undefined && previous !== said && live) note(sample.unix_ms, `node ${node.id}: ${said}`);
    state.previous.set(node.id, said);
  }
}

/** One line about a node's availability, for the list of changes. */
function describe(node) {
  const process = node.process ? `process ${node.process}, ` : '';
  if (!node.status) return `${process}does not answer`;
  const cut = node.status.cut_links || [];
  const links = cut.length ? `, its link${cut.length > 1 ? 's' : ''} to ${cut.map((id) => `node ${id}`).join(' and ')} cut` : '';
  return `${process}answers as ${node.status.role}${links}`;
}

function note(t, text) {
  const list = $('events');
  const item = document.createElement('li');
  const time = document.createElement('time');
  time.dateTime = new Date(t).toISOString();
  time.textContent = new Date(t).toLocaleTimeString();
  item.append(time, ` ${text}`);
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function render() {
  const latest = state.samples[state.samples.length - 1];
  if (!latest) return;
  renderSummary(latest);
  renderRows(latest);
  renderMessages(latest);
  renderLinks(latest);
  renderSnapshotChoices(latest);
  renderTransferChoices(latest);
  renderCharts();
}

function renderSummary(sample) {
  const answering = sample.nodes.filter((node) => node.status).length;
  const leader = leaderOf(sample);
  const leading = leader ? `Leader: node ${leader.id}, term ${leader.term}.` : 'No node reports itself leader.';
  const transfer = leader && leader.node.status.transfer_target
    ? ` Handing leadership to node ${leader.node.status.transfer_target}.`
    : '';
  $('summary').textContent = `${leading}${transfer} ${answering} of ${sample.nodes.length} nodes answer.${membershipText(leader)}`;
}

/** The configuration as the leader reports it, in words. */
function membershipText(leader) {
  const membership = leader && leader.node.status.membership;
  if (!membership) return '';
  const list = (ids) => (ids.length ? ids.join(', ') : 'none');
  const joint = membership.joint ? ` (joint with the outgoing voters ${list(membership.outgoing)})` : '';
  return ` Voters: ${list(membership.voters)}${joint}; learners: ${list(membership.learners)}.`;
}

const COLUMNS = ['node', 'role', 'term', 'leader', 'commit', 'applied', 'last-index', 'snapshot', 'match', 'writes', 'process', 'address', 'actions'];
const NUMERIC = new Set(['term', 'commit', 'applied', 'last-index', 'snapshot', 'match', 'writes']);

function rowFor(id) {
  let row = state.rows.get(id);
  if (row) return row;
  const tr = document.createElement('tr');
  tr.id = `node-${id}`;
  const cells = {};
  for (const column of COLUMNS) {
    const cell = document.createElement(column === 'node' ? 'th' : 'td');
    if (column === 'node') cell.scope = 'row';
    cell.className = column + (NUMERIC.has(column) ? ' num' : '');
    if (column === 'process' || column === 'actions') cell.classList.add('demo-only');
    cells[column] = cell;
    tr.append(cell);
  }
  const buttons = {};
  for (const action of state.settings.process_actions) {
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.action = action;
    button.textContent = action;
    button.setAttribute('aria-label', `${action} node ${id}`);
    button.addEventListener('click', () => act(id, action));
    cells.actions.append(button);
    buttons[action] = button;
  }
  row = { tr, cells, buttons };
  state.rows.set(id, row);
  return row;
}

function renderRows(sample) {
  const body = $('node-rows');
  const leader = leaderOf(sample);
  const progress = new Map();
  if (leader) for (const follower of leader.node.status.progress) progress.set(follower.id, follower);
  const seen = new Set();
  for (const node of sample.nodes) {
    seen.add(node.id);
    const { tr, cells, buttons } = rowFor(node.id);
    if (tr.parentElement !== body) body.append(tr);
    const status = node.status;
    const role = status ? status.role : 'unreachable';
    tr.dataset.role = role;
    tr.classList.toggle('is-leader', role === 'leader');
    const servedHere = state.settings.served_by === node.id ? ' (serves this page)' : '';
    cells.node.textContent = `node ${node.id}${servedHere}`;
    cells.role.innerHTML = '';
    const badge = document.createElement('span');
    badge.className = `role role-${role}`;
    badge.textContent = `${ROLE_SYMBOLS[role] || '?'} ${role}`;
    cells.role.append(badge);
    cells.term.textContent = status ? status.term : '—';
    cells.leader.textContent = status ? (status.leader === null ? 'none known' : `node ${status.leader}`) : '—';
    cells.commit.textContent = status ? status.commit : '—';
    cells.applied.textContent = status ? status.applied : '—';
    cells['last-index'].textContent = status ? status.last_index : '—';
    cells.snapshot.textContent = status ? (status.snapshot ? status.snapshot : 'none') : '—';
    const follower = progress.get(node.id);
    cells.match.textContent = role === 'leader' ? '(leads)'
      : follower ? `${follower.match} (${follower.state})` : '—';
    cells.writes.textContent = node.load ? node.load.writes_per_second.toFixed(0) : '—';
    cells.process.textContent = node.process || '—';
    cells.address.innerHTML = '';
    cells.address.append(node.client_addr || 'address unknown');
    if (node.error) {
      const problem = document.createElement('div');
      problem.className = 'problem';
      problem.textContent = node.error;
      cells.address.append(problem);
    }
    const process = node.process;
    const enabled = {
      stop: process === 'running' || process === 'paused',
      pause: process === 'running',
      resume: process === 'paused',
      restart: process === 'stopped',
    };
    // Only what applies is shown: a stopped node offers restart, a paused one resume.
    for (const [action, button] of Object.entries(buttons)) button.hidden = !enabled[action];
  }
  for (const [id, row] of state.rows) if (!seen.has(id)) row.tr.remove();
}

/** Who sends how many messages to whom: each sender's own count, as it reports it. */
function renderMessages(sample) {
  const table = $('messages');
  const ids = sample.nodes.map((node) => node.id);
  const head = document.createElement('tr');
  const corner = document.createElement('th');
  corner.scope = 'col';
  corner.textContent = 'from \\ to';
  head.append(corner);
  for (const id of ids) {
    const cell = document.createElement('th');
    cell.scope = 'col';
    cell.textContent = `node ${id}`;
    head.append(cell);
  }
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const node of sample.nodes) {
    const row = document.createElement('tr');
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = `node ${node.id}`;
    row.append(name);
    const sent = node.load ? node.load.messages_per_second || {} : null;
    for (const id of ids) {
      const cell = document.createElement('td');
      cell.className = 'num';
      if (id === node.id) cell.textContent = '—';
      else if (!sent) cell.textContent = 'no report';
      else cell.textContent = id in sent ? sent[id].toFixed(0) : '—';
      row.append(cell);
    }
    body.append(row);
  }
}

/** Every pair of nodes, and whether either end reports the link between them cut. */
function renderLinks(sample) {
  const body = $('links').tBodies[0];
  const seen = new Set();
  const nodes = sample.nodes;
  for (let i = 0; i < nodes.length; i += 1) {
    for (let j = i + 1; j < nodes.length; j += 1) {
      const [a, b] = [nodes[i], nodes[j]];
      const key = `${a.id}-${b.id}`;
      seen.add(key);
      const row = linkRow(a.id, b.id);
      if (row.tr.parentElement !== body) body.append(row.tr);
      const cutBy = [];
      const unknown = [];
      for (const [end, other] of [[a, b], [b, a]]) {
        if (!end.status) unknown.push(end.id);
        else if ((end.status.cut_links || []).includes(other.id)) cutBy.push(end.id);
      }
      const cut = cutBy.length > 0;
      row.tr.dataset.state = cut ? 'cut' : 'open';
      let text = cut
        ? `✂ cut by ${cutBy.length === 2 ? 'both nodes' : `node ${cutBy[0]}`}`
        : '↔ not cut';
      if (unknown.length) text += ` (node ${unknown.join(' and node ')} does not answer)`;
      row.state.textContent = text;
      row.button.dataset.action = cut ? 'heal' : 'cut';
      row.button.textContent = cut ? 'heal' : 'cut';
      row.button.setAttribute('aria-label', `${cut ? 'heal' : 'cut'} the link between node ${a.id} and node ${b.id}`);
    }
  }
  for (const [key, row] of state.links) if (!seen.has(key)) row.tr.remove();
}

function linkRow(a, b) {
  const key = `${a}-${b}`;
  let row = state.links.get(key);
  if (row) return row;
  const tr = document.createElement('tr');
  tr.id = `link-${key}`;
  const name = document.createElement('th');
  name.scope = 'row';
  name.textContent = `node ${a} — node ${b}`;
  const stateCell = document.createElement('td');
  stateCell.className = 'link-state';
  const actions = document.createElement('td');
  actions.className = 'actions demo-only';
  const button = document.createElement('button');
  button.type = 'button';
  button.addEventListener('click', () => linkAct(a, b, button.dataset.action));
  actions.append(button);
  tr.append(name, stateCell, actions);
  row = { tr, state: stateCell, button };
  state.links.set(key, row);
  return row;
}

/** The nodes the snapshot form offers, the choice kept across samples. */
function renderSnapshotChoices(sample) {
  const select = $('snapshot-node');
  const ids = sample.nodes.map((node) => String(node.id));
  const offered = [...select.options].map((option) => option.value);
  if (ids.join(',') === offered.join(',')) return;
  const chosen = select.value;
  select.replaceChildren(...ids.map((id) => new Option(`node ${id}`, id)));
  if (ids.includes(chosen)) select.value = chosen;
}

/** The voters the transfer form offers: the leader's voters but itself, the choice kept. */
function renderTransferChoices(sample) {
  const select = $('transfer-to');
  const leader = leaderOf(sample);
  const voters = leader && leader.node.status.membership ? leader.node.status.membership.voters : [];
  const ids = ['', ...voters.filter((id) => id !== leader.id).map(String)];
  const offered = [...select.options].map((option) => option.value);
  if (ids.join(',') === offered.join(',')) return;
  const chosen = select.value;
  select.replaceChildren(...ids.map((id) =>
    new Option(id ? `node ${id}` : 'the most up-to-date voter', id)));
  if (ids.includes(chosen)) select.value = chosen;
}

function renderCharts() {
  const now = state.samples[state.samples.length - 1].unix_ms;
  const from = now - CHART_WINDOW_MS;
  const recent = state.samples.filter((sample) => sample.unix_ms >= from);
  const leaderLoad = (sample) => {
    const leader = leaderOf(sample);
    return leader && leader.node.load ? leader.node.load : null;
  };
  const commits = recent.map((sample) => {
    const load = leaderLoad(sample);
    return { t: sample.unix_ms, v: load ? load.commits_per_second : null };
  });
  const latency = recent.map((sample) => {
    const load = leaderLoad(sample);
    const p99 = load ? load.write_p99_seconds : null;
    return { t: sample.unix_ms, v: p99 === null ? null : p99 * 1000 };
  });
  const markers = state.markers.filter((marker) => marker.t >= from);
  drawChart($('commit-chart'), commits, markers, from, now, (v) => `${round(v)}/s`, 'entries committed per second');
  drawChart($('latency-chart'), latency, markers, from, now, (v) => `${round(v)} ms`, 'p99 write latency');
}

/** A number with as many decimals as its size needs to be told apart from its neighbours. */
function round(v) {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

const SVG = 'http://www.w3.org/2000/svg';

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function drawChart(svg, points, markers, from, to, format, what) {
  const width = 600, height = 180, left = 56, right = 10, top = 14, bottom = 22;
  const values = points.map((point) => point.v).filter((v) => v !== null);
  const max = Math.max(1, ...values) * 1.1;
  const x = (t) => left + ((t - from) / (to - from)) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  svg.replaceChildren();
  const latest = values.length ? format(values[values.length - 1]) : 'no data';
  const peak = values.length ? format(Math.max(...values)) : 'no data';
  svg.append(svgElement('title', {}, `${what}: latest ${latest}, highest in view ${peak}`));
  for (const fraction of [0, 0.5, 1]) {
    const v = (max / 1.1) * fraction;
    svg.append(svgElement('line', { class: 'axis', x1: left, x2: width - right, y1: y(v), y2: y(v) }));
    svg.append(svgElement('text', { x: left - 4, y: y(v) + 4, 'text-anchor': 'end' }, format(v)));
  }
  for (let minutes = 5; minutes >= 0; minutes -= 1) {
    const t = to - minutes * 60000;
    const label = minutes === 0 ? 'now' : `−${minutes} min`;
    svg.append(svgElement('text', { x: x(t), y: height - 6, 'text-anchor': minutes === 0 ? 'end' : 'middle' }, label));
  }
  markers.forEach((marker, index) => {
    const mx = x(marker.t);
    svg.append(svgElement('line', { class: 'marker', x1: mx, x2: mx, y1: top, y2: height - bottom }));
    const label = marker.leader === null ? 'no leader' : `→ node ${marker.leader}`;
    // Labels of changes close together go on three staggered lines, and to the left of their
    // line near the right edge, so that they stay readable.
    const nearEnd = mx > width - 80;
    const attributes = { class: 'marker-label', x: nearEnd ? mx - 3 : mx + 3, y: top + 8 + (index % 3) * 12 };
    if (nearEnd) attributes['text-anchor'] = 'end';
    svg.append(svgElement('text', attributes, label));
  });
  let path = '';
  let drawing = false;
  for (const point of points) {
    if (point.v === null) { drawing = false; continue; }
    path += `${drawing ? 'L' : 'M'}${x(point.t).toFixed(1)},${y(point.v).toFixed(1)} `;
    drawing = true;
  }
  if (path) svg.append(svgElement('path', { class: 'series', d: path }));
}

async function answerText(response) {
  const text = await response.text();
  if (response.ok) return text;
  try {
    const error = JSON.parse(text);
    return `${response.status} ${error.code}: ${error.message}`;
  } catch (_) {
    return `${response.status}: ${text}`;
  }
}

function keyPath(key) {
  return `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
}

async function put(event) {
  event.preventDefault();
  const key = $('kv-key').value;
  const value = $('kv-value').value;
  const result = $('kv-result');
  result.textContent = `putting ${key}…`;
  try {
    const response = await fetch(keyPath(key), { method: 'PUT', body: value });
    const text = await answerText(response);
    if (response.ok) {
      const answer = JSON.parse(text);
      result.textContent = `put ${key} = ${value}: committed at revision ${answer.revision}`;
    } else {
      result.textContent = `put ${key} failed: ${text}`;
    }
  } catch (error) {
    result.textContent = `put ${key} failed: ${error}`;
  }
}

async function get() {
  const key = $('kv-key').value;
  const result = $('kv-result');
  result.textContent = `getting ${key}…`;
  try {
    const response = await fetch(keyPath(key));
    const text = await answerText(response);
    result.textContent = response.ok
      ? `${key} = ${text} (revision ${response.headers.get('skiff-revision')})`
      : `get ${key} failed: ${text}`;
  } catch (error) {
    result.textContent = `get ${key} failed: ${error}`;
  }
}

async function act(id, action) {
  const result = $('action-result');
  result.textContent = `${action} node ${id}…`;
  try {
    const response = await fetch(`/v1/demo/nodes/${id}/${action}`, { method: 'POST' });
    const text = await answerText(response);
    result.textContent = response.ok ? JSON.parse(text).message : `${action} node ${id} failed: ${text}`;
  } catch (error) {
    result.textContent = `${action} node ${id} failed: ${error}`;
  }
}

async function linkAct(a, b, action) {
  const result = $('action-result');
  result.textContent = `${action} the link between node ${a} and node ${b}…`;
  try {
    const response = await fetch(`/v1/demo/links/${a}/${b}/${action}`, { method: 'POST' });
    const text = await answerText(response);
    result.textContent = response.ok ? JSON.parse(text).message : `${action} link ${a}–${b}: ${text}`;
  } catch (error) {
    result.textContent = `${action} link ${a}–${b} failed: ${error}`;
  }
}

async function snapshot(event) {
  event.preventDefault();
  const id = $('snapshot-node').value;
  const result = $('snapshot-result');
  if (!id) return;
  result.textContent = `node ${id} is taking a snapshot…`;
  try {
    const response = await fetch(`/v1/dashboard/nodes/${id}/snapshot`, { method: 'POST' });
    const text = await answerText(response);
    if (response.ok) {
      const taken = JSON.parse(text);
      result.textContent = `node ${id} took a snapshot at index ${taken.index} (term ${taken.term}) and compacted its log behind it`;
    } else {
      result.textContent = `node ${id}: ${text}`;
    }
  } catch (error) {
    result.textContent = `node ${id}: the snapshot request failed: ${error}`;
  }
}

async function transfer(event) {
  event.preventDefault();
  const to = $('transfer-to').value;
  const result = $('transfer-result');
  const target = to ? `node ${to}` : 'the most up-to-date voter';
  result.textContent = `handing leadership to ${target}…`;
  try {
    const body = to ? JSON.stringify({ to: Number(to) }) : '';
    const response = await fetch('/v1/leader/transfer', {
      method: 'POST', body, headers: { 'content-type': 'application/json' },
    });
    const text = await answerText(response);
    if (response.ok) {
      const done = JSON.parse(text);
      result.textContent = done.leader === done.previous_leader
        ? `node ${done.leader} already leads (term ${done.term})`
        : `leadership transferred from node ${done.previous_leader} to node ${done.leader} (term ${done.term})`;
    } else {
      result.textContent = `transfer to ${target} failed: ${text}`;
    }
  } catch (error) {
    result.textContent = `transfer to ${target} failed: ${error}`;
  }
}

async function changeMembers(event) {
  event.preventDefault();
  const action = $('members-action').value;
  const id = Number($('members-id').value);
  const peer = $('members-peer').value.trim();
  const result = $('members-result');
  const change = { action, id };
  if (action === 'add_voter' || action === 'add_learner') change.peer_addr = peer;
  const what = `${$('members-action').selectedOptions[0].textContent} (node ${id})`;
  result.textContent = `${what}…`;
  try {
    const response = await fetch('/v1/members', {
      method: 'POST',
      body: JSON.stringify({ changes: [change] }),
      headers: { 'content-type': 'application/json' },
    });
    const text = await answerText(response);
    if (response.ok) {
      const reached = JSON.parse(text);
      result.textContent = `${what}: done; voters ${reached.voters.join(', ')}, learners ${reached.learners.length ? reached.learners.join(', ') : 'none'}`;
    } else {
      result.textContent = `${what} failed: ${text}`;
    }
  } catch (error) {
    result.textContent = `${what} failed: ${error}`;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('kv-form').addEventListener('submit', put);
  $('snapshot-form').addEventListener('submit', snapshot);
  $('transfer-form').addEventListener('submit', transfer);
  $('members-form').addEventListener('submit', changeMembers);
  $('kv-get').addEventListener('click', get);
  connect();
});
