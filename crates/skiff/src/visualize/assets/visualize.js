// skiff visualizer: draws what the simulator and the core report, step by step.
// Nothing here computes protocol state; the server sends every role, term, vote, index and
// message as the core, its driver and the simulator hold them.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const ROLE_SYMBOLS = { leader: '★', follower: '●', candidate: '◆', 'pre-candidate': '◇', crashed: '✕', paused: '‖' };

// `step`: the step shown; `target`: the step asked for and not yet shown (null when none);
// `busy`: a request for a step is under way.
const run = { summary: null, step: 0, target: null, busy: false };
// `busy`: an action on the hand-driven cluster is under way (its buttons are disabled, since
// the table they belong to is about to change).
const handState = { busy: false };

async function getJSON(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

/** The word for a node's role, or its state when it does not run. */
function roleOf(node) {
  if (node.state !== 'up') return node.state;
  return node.core ? node.core.role : 'crashed';
}

/** Nodes on a circle; arrows between them for the messages in flight, counted per link. */
function drawCluster(svg, nodes, messages) {
  svg.replaceChildren();
  const defs = svgElement('defs', {});
  const marker = svgElement('marker', { id: `${svg.id}-arrow`, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svgElement('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#57606a' }));
  defs.append(marker);
  svg.append(defs);
  const cx = 210, cy = 150, radius = 105, nodeRadius = 36;
  const place = new Map();
  nodes.forEach((node, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / nodes.length;
    place.set(node.id, { x: cx + radius * Math.cos(angle), y: cy + radius * Math.sin(angle) });
  });
  const links = new Map();
  for (const message of messages) {
    const key = `${message.from}-${message.to}`;
    const link = links.get(key) || { from: message.from, to: message.to, messages: [] };
    link.messages.push(message.text);
    links.set(key, link);
  }
  for (const link of links.values()) {
    const a = place.get(link.from), b = place.get(link.to);
    if (!a || !b) continue;
    const dx = b.x - a.x, dy = b.y - a.y, length = Math.hypot(dx, dy);
    const ux = dx / length, uy = dy / length;
    // Offset sideways so that the two directions of a link are two arrows.
    const ox = -uy * 7, oy = ux * 7;
    const x1 = a.x + ux * nodeRadius + ox, y1 = a.y + uy * nodeRadius + oy;
    const x2 = b.x - ux * (nodeRadius + 2) + ox, y2 = b.y - uy * (nodeRadius + 2) + oy;
    const group = svgElement('g', {});
    group.append(svgElement('title', {}, link.messages.join('\n')));
    group.append(svgElement('line', { class: 'link', x1, y1, x2, y2, 'marker-end': `url(#${svg.id}-arrow)` }));
    group.append(svgElement('text', { class: 'count', x: (x1 + x2) / 2 + ox * 1.6, y: (y1 + y2) / 2 + oy * 1.6 + 4 }, `${link.messages.length}`));
    svg.append(group);
  }
  for (const node of nodes) {
    const { x, y } = place.get(node.id);
    const role = roleOf(node);
    const group = svgElement('g', { class: `node role-${role} state-${node.state}` });
    group.append(svgElement('circle', { cx: x, cy: y, r: nodeRadius }));
    group.append(svgElement('text', { class: 'name', x, y: y - 10 }, `n${node.id}`));
    group.append(svgElement('text', { x, y: y + 5 }, `${ROLE_SYMBOLS[role] || '?'} ${role}`));
    const term = node.core ? `term ${node.core.term}` : '';
    group.append(svgElement('text', { x, y: y + 19 }, term));
    if (node.isolated) group.append(svgElement('text', { class: 'isolated', x, y: y + nodeRadius + 14 }, 'cut off'));
    svg.append(group);
  }
}

/** How many log indexes the logs show: the last ones any node holds. */
const LOG_WINDOW = 30;

/** Each node's last log entries, aligned by index: the term written in the cell and coloured
 *  by it; a solid border for what the node reports committed. */
function drawLogs(container, nodes) {
  container.replaceChildren();
  const high = Math.max(1, ...nodes.map((node) => node.last_index));
  const low = Math.max(1, high - LOG_WINDOW + 1);
  const header = document.createElement('div');
  header.className = 'log header';
  const label = document.createElement('span');
  label.className = 'who';
  label.textContent = low > 1 ? `index (from ${low})` : 'index';
  header.append(label);
  for (let index = low; index <= high; index += 1) {
    const cell = document.createElement('span');
    cell.className = 'entry index';
    cell.textContent = index % 5 === 0 || index === low ? index : '';
    header.append(cell);
  }
  container.append(header);
  for (const node of nodes) {
    const row = document.createElement('div');
    row.className = 'log';
    const who = document.createElement('span');
    who.className = 'who';
    const commit = node.core ? node.core.commit : 0;
    who.textContent = `n${node.id}`;
    row.append(who);
    for (let index = low; index <= high; index += 1) {
      const cell = document.createElement('span');
      if (index > node.last_index) {
        cell.className = 'entry none';
        cell.title = `index ${index}: no entry`;
      } else if (index < node.log_first) {
        cell.className = 'entry gap';
        cell.textContent = '?';
        cell.title = `index ${index}: not sent by the server`;
      } else {
        const term = node.log_terms[index - node.log_first];
        const committed = index <= commit;
        cell.className = `entry t${term % 8}${committed ? ' committed' : ''}`;
        cell.textContent = term;
        cell.title = `index ${index}, term ${term}${committed ? ', committed' : ''}`;
      }
      row.append(cell);
    }
    const summary = document.createElement('span');
    summary.className = 'note';
    summary.textContent = ` last ${node.last_index}, commit ${node.core ? commit : '—'}`;
    row.append(summary);
    container.append(row);
  }
}

// ---- The simulator run ----

async function loadRun() {
  const summary = await getJSON('/v1/run');
  run.summary = summary;
  $('seed').textContent = summary.seed;
  $('replay-command').textContent = summary.replay;
  $('verdict').textContent = `${summary.verdict}, ${summary.nodes} nodes, ${summary.steps} events`;
  $('failing').disabled = summary.failing_step === null;
  $('go-step').max = summary.steps;
  // A link may name a step: #step=N, or #failing for the step where the invariant broke.
  const named = /^#step=(\d+)$/.exec(window.location.hash);
  if (named) goTo(Number(named[1]));
  else if (window.location.hash === '#failing' && summary.failing_step !== null) goTo(summary.failing_step);
  else goTo(0);
}

/** Where a relative move (back, forward) starts: the step asked for last, even if it is still
 *  on its way, so that two clicks on Back go two steps back. */
function here() {
  return run.target === null ? run.step : run.target;
}

/** Shows step `step` (clamped to the run). One request is under way at a time; asking again
 *  meanwhile only moves the target, and the page fetches the latest target once the request
 *  under way has answered: no click is lost, however slow the server, and the page ends on
 *  the step asked for last. `#position` carries `aria-busy` while a request is under way and
 *  `data-step` with the step shown. */
function goTo(step) {
  if (!run.summary) return;
  run.target = Math.max(0, Math.min(run.summary.steps, step));
  if (!run.busy) fetchTarget();
}

async function fetchTarget() {
  const position = $('position');
  run.busy = true;
  position.setAttribute('aria-busy', 'true');
  while (run.target !== null) {
    const target = run.target;
    position.textContent = `stepping to ${target}…`;
    try {
      const view = await getJSON(`/v1/run/step/${target}`);
      // A newer target makes this view stale before it is drawn: go on to that one.
      if (run.target !== target) continue;
      run.target = null;
      run.step = view.step;
      if (!$('run').hidden) window.history.replaceState(null, '', `#step=${view.step}`);
      showStep(view);
    } catch (error) {
      if (run.target !== target) continue;
      run.target = null;
      position.textContent = `could not step to ${target}: ${error.message}`;
    }
  }
  run.busy = false;
  position.setAttribute('aria-busy', 'false');
}

function showStep(view) {
  const summary = run.summary;
  $('go-step').value = view.step;
  $('position').dataset.step = view.step;
  $('position').textContent = `Step ${view.step} of ${summary.steps} · simulated time ${view.time} · ${view.event}`;
  const invariants = $('invariants');
  if (view.violation) {
    invariants.className = 'broken';
    invariants.textContent = `Broken after this step: ${view.violation}`;
  } else {
    invariants.className = 'ok';
    invariants.textContent = 'Every invariant the simulator checks after each event holds: election safety, vote safety, '
      + 'log matching, leader completeness, state-machine safety, monotonic term and commit, and the rest.';
  }
  drawCluster($('run-cluster'), view.nodes, view.in_flight);
  $('run-lines').textContent = view.lines.length ? view.lines.join('\n') : '(this event wrote no trace line)';
  drawLogs($('run-logs'), view.nodes);
  const body = $('run-messages');
  body.replaceChildren();
  for (const message of view.in_flight.slice(0, 200)) {
    const row = document.createElement('tr');
    for (const text of [message.arrives, `n${message.from} → n${message.to}`, message.text]) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.append(cell);
    }
    row.lastElementChild.className = 'text';
    body.append(row);
  }
  if (view.in_flight.length > 200) {
    const row = document.createElement('tr');
    const cell = document.createElement('td');
    cell.colSpan = 3;
    cell.textContent = `and ${view.in_flight.length - 200} more`;
    row.append(cell);
    body.append(row);
  }
}

// ---- The hand-driven cluster ----

/** Acts on the hand-driven cluster (or, without an action, fetches it) and shows the answer.
 *  One request at a time: the part's buttons are disabled meanwhile, because a button names a
 *  message by its position in a table the answer replaces. `#hand` carries `aria-busy` while
 *  a request is under way and `data-actions` with the number of actions the server has done. */
async function hand(action, query) {
  if (handState.busy) return;
  const path = `/v1/hand${action ? `/${action}` : ''}${query ? `?${query}` : ''}`;
  setHandBusy(true);
  try {
    const view = await getJSON(path, action ? { method: 'POST' } : undefined);
    if (view.message) $('hand-result').textContent = view.message;
    showHand(view);
  } catch (error) {
    $('hand-result').textContent = `${action}: ${error.message}`;
  } finally {
    setHandBusy(false);
  }
}

function setHandBusy(busy) {
  handState.busy = busy;
  const part = $('hand');
  part.setAttribute('aria-busy', String(busy));
  for (const element of part.querySelectorAll('button')) element.disabled = busy;
}

function button(label, onClick, aria) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = label;
  if (aria) element.setAttribute('aria-label', aria);
  element.addEventListener('click', onClick);
  return element;
}

function showHand(view) {
  $('hand').dataset.actions = view.actions;
  drawCluster($('hand-cluster'), view.nodes, view.in_flight);
  drawLogs($('hand-logs'), view.nodes);
  const nodes = $('hand-nodes');
  nodes.replaceChildren();
  for (const node of view.nodes) {
    const row = document.createElement('tr');
    row.id = `hand-node-${node.id}`;
    const role = roleOf(node);
    const core = node.core;
    const cells = [`n${node.id}${node.isolated ? ' (cut off)' : ''}`, `${ROLE_SYMBOLS[role] || '?'} ${role}`,
      core ? core.term : '—', core && core.vote !== null ? `n${core.vote}` : '—', core ? core.commit : '—'];
    cells.forEach((text, i) => {
      const cell = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) cell.scope = 'row';
      if (i === 1) cell.className = `role-word-${role}`;
      cell.textContent = text;
      row.append(cell);
    });
    const actions = document.createElement('td');
    const id = node.id;
    if (node.state === 'up') {
      actions.append(
        button('tick', () => hand('tick', `node=${id}`), `tick n${id}`),
        button('fire timeout', () => hand('timeout', `node=${id}`), `fire n${id}'s election timeout`),
        button('crash', () => hand('crash', `node=${id}`), `crash n${id}`));
    } else {
      actions.append(button('restart', () => hand('restart', `node=${id}`), `restart n${id}`));
    }
    if (!node.isolated) actions.append(button('isolate', () => hand('isolate', `node=${id}`), `isolate n${id}`));
    row.append(actions);
    nodes.append(row);
  }
  const messages = $('hand-messages');
  messages.replaceChildren();
  for (const message of view.in_flight) {
    const row = document.createElement('tr');
    for (const text of [message.position, `n${message.from} → n${message.to}`, message.text]) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.append(cell);
    }
    row.lastElementChild.className = 'text';
    const actions = document.createElement('td');
    actions.append(
      button('deliver', () => hand('deliver', `message=${message.position}`), `deliver message ${message.position}`),
      button('drop', () => hand('drop', `message=${message.position}`), `drop message ${message.position}`));
    row.append(actions);
    messages.append(row);
  }
  if (!view.in_flight.length) {
    const row = document.createElement('tr');
    const cell = document.createElement('td');
    cell.colSpan = 4;
    cell.textContent = 'none: fire a node\'s timeout, or propose at the leader';
    row.append(cell);
    messages.append(row);
  }
  const lines = $('hand-lines');
  lines.textContent = view.lines.length ? view.lines.join('\n') : 'nothing yet';
  lines.scrollTop = lines.scrollHeight;
}

function showPart(part) {
  if (part === 'hand') window.history.replaceState(null, '', '#hand');
  $('run').hidden = part !== 'run';
  $('hand').hidden = part !== 'hand';
  $('show-run').setAttribute('aria-pressed', String(part === 'run'));
  $('show-hand').setAttribute('aria-pressed', String(part === 'hand'));
  if (part === 'hand') hand();
}

document.addEventListener('DOMContentLoaded', () => {
  $('first').addEventListener('click', () => goTo(0));
  $('back-100').addEventListener('click', () => goTo(here() - 100));
  $('back').addEventListener('click', () => goTo(here() - 1));
  $('forward').addEventListener('click', () => goTo(here() + 1));
  $('forward-100').addEventListener('click', () => goTo(here() + 100));
  $('last').addEventListener('click', () => goTo(run.summary ? run.summary.steps : 0));
  $('failing').addEventListener('click', () => goTo(run.summary.failing_step));
  $('go-form').addEventListener('submit', (event) => {
    event.preventDefault();
    goTo(Number($('go-step').value));
  });
  document.addEventListener('keydown', (event) => {
    if ($('run').hidden || event.target.tagName === 'INPUT') return;
    if (event.key === 'ArrowRight') goTo(here() + 1);
    if (event.key === 'ArrowLeft') goTo(here() - 1);
  });
  $('show-run').addEventListener('click', () => showPart('run'));
  $('show-hand').addEventListener('click', () => showPart('hand'));
  for (const element of document.querySelectorAll('[data-hand]')) {
    element.addEventListener('click', () => hand(element.dataset.hand));
  }
  if (window.location.hash === '#hand') showPart('hand');
  loadRun().catch((error) => { $('verdict').textContent = `could not load the run: ${error.message}`; });
});
