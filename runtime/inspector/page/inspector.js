/* global document, window, fetch, EventSource, clearTimeout */
// The jetactor inspector page: plain ES module, no build step. Diagrams are laid out in the
// browser by Graphviz compiled to WebAssembly (@viz-js/viz, served by the inspector itself).

const $ = (selector) => document.querySelector(selector);
const SVG = 'http://www.w3.org/2000/svg';
const FEED_LIMIT = 300;

const state = {
  /** @type {any} */ catalogue: null,
  /** key → { key, name, graph, dot, kind, domain?, aggregate?, description? } */
  machines: new Map(),
  /** key → rendered SVG element */
  svgs: new Map(),
  /** key of the diagram shown */
  current: '',
  /** stats.states: key → node id → actors */
  counts: {},
  /** { domain, aggregate, id } of the aggregate open, if any */
  open: null,
  /** the last /api/aggregate answer shown */
  view: null,
  following: true,
  requestSeq: 0,
  /** @type {any} */ viz: null,
};

main().catch((error) => showDiagramError(`The inspector could not start: ${message(error)}`));

async function main() {
  state.catalogue = await getJson('/api/catalogue');
  const { catalogue } = state;
  $('#title').textContent = catalogue.title;
  $('#mode').textContent = catalogue.commands ? 'commands enabled' : 'read-only';
  for (const domain of catalogue.domains) {
    for (const aggregate of domain.aggregates) {
      state.machines.set(aggregate.key, { ...aggregate, kind: 'aggregate', domain: domain.name });
    }
  }
  for (const machine of catalogue.runtime) {
    state.machines.set(machine.key, { ...machine, kind: 'runtime' });
  }
  buildNav();
  setUpForms();
  connect();
  const { instance } = await import('/vendor/viz.js');
  state.viz = await instance();
  window.addEventListener('hashchange', route);
  await route();
}

// ---------------------------------------------------------------------------------------------
// Navigation: #/<domain>.<Aggregate>[/<id>]

function buildNav() {
  const nav = $('#machines');
  const group = (title, machines) => {
    const heading = document.createElement('h2');
    heading.textContent = title;
    nav.append(heading);
    for (const machine of machines) {
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.key = machine.key;
      const name = document.createElement('span');
      name.textContent = machine.name;
      const count = document.createElement('span');
      count.className = 'count';
      button.append(name, count);
      button.addEventListener('click', () => {
        window.location.hash = `#/${machine.key}`;
      });
      nav.append(button);
    }
  };
  for (const domain of state.catalogue.domains) group(domain.name, domain.aggregates);
  group('runtime', state.catalogue.runtime);
}

async function route() {
  const [key = '', ...rest] = decodeURIComponent(window.location.hash.replace(/^#\/?/, '')).split(
    '/',
  );
  const first = state.catalogue.domains[0]?.aggregates[0]?.key ?? state.catalogue.runtime[0]?.key;
  const chosen = state.machines.has(key) ? key : first;
  await showDiagram(chosen);
  const id = rest.join('/');
  const machine = state.machines.get(chosen);
  if (id !== '' && machine?.kind === 'aggregate') {
    await openAggregate(machine.domain, machine.name, id);
  } else if (state.open && `${state.open.domain}.${state.open.aggregate}` !== chosen) {
    closeAggregate();
  }
}

// ---------------------------------------------------------------------------------------------
// Diagrams

async function showDiagram(key) {
  const machine = state.machines.get(key);
  if (machine === undefined) return;
  state.current = key;
  for (const button of document.querySelectorAll('nav button')) {
    button.setAttribute('aria-current', String(button.dataset.key === key));
  }
  $('#diagram-title').textContent =
    machine.kind === 'aggregate'
      ? `${machine.domain} › ${machine.name}`
      : `runtime › ${machine.name}`;
  $('#diagram-note').textContent =
    machine.kind === 'aggregate'
      ? 'Numbers: live actors of this node in each state.'
      : `${machine.description}. Numbers: how many are in each state now.`;
  $('#open-form').hidden = machine.kind !== 'aggregate';
  $('#open-type').textContent = machine.name;
  $('#send-form').hidden = !(state.catalogue.commands && machine.kind === 'aggregate');
  fillCommands(machine);
  let svg = state.svgs.get(key);
  if (svg === undefined) {
    try {
      svg = state.viz.renderSVGElement(machine.dot);
    } catch (error) {
      showDiagramError(`Graphviz could not draw ${machine.name}: ${message(error)}`);
      return;
    }
    // Natural size (Graphviz gives points), shrunk to fit the panel when wider.
    svg.style.width = `${Math.round(svg.viewBox.baseVal.width * 1.5)}px`;
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    state.svgs.set(key, svg);
  }
  const holder = $('#diagram');
  holder.replaceChildren(svg);
  holder.dataset.key = key;
  $('#diagram-error').hidden = true;
  annotate(svg);
  applyCounts();
  applyHighlight();
  document.body.dataset.ready = 'true';
}

/** Marks every state's group with data-state = its graph node id, and edges with their head. */
function annotate(svg) {
  if (svg.dataset.annotated === 'true') return;
  svg.dataset.annotated = 'true';
  for (const group of svg.querySelectorAll('g.node, g.cluster')) {
    const title = group.querySelector(':scope > title')?.textContent ?? '';
    const id = group.classList.contains('cluster') ? title.replace(/^cluster_/, '') : title;
    if (id === '' || id.startsWith('#')) continue;
    group.dataset.state = id;
  }
  for (const group of svg.querySelectorAll('g.edge')) {
    const title = group.querySelector(':scope > title')?.textContent ?? '';
    const arrow = title.indexOf('->');
    if (arrow < 0) continue;
    group.dataset.head = title.slice(arrow + 2).replace(/^#anchor /, '');
    group.dataset.label = [...group.querySelectorAll('text')].map((t) => t.textContent).join(' ');
  }
}

function applyCounts() {
  const svg = state.svgs.get(state.current);
  if (svg === undefined || !svg.isConnected) return;
  const counts = state.counts[state.current] ?? {};
  // Badges keep their size on screen however much the diagram is scaled down to fit.
  const shown = svg.getBoundingClientRect().width;
  const scale = shown > 0 ? svg.viewBox.baseVal.width / shown : 1;
  for (const group of svg.querySelectorAll('[data-state]')) {
    const count = counts[group.dataset.state] ?? 0;
    if (group.dataset.count === String(count)) continue;
    group.dataset.count = String(count);
    group.querySelector(':scope > .badge-count')?.remove();
    if (count === 0) continue;
    const shape = group.querySelector(':scope > path, :scope > polygon, :scope > ellipse');
    if (shape === null) continue;
    const box = shape.getBBox();
    const text = String(count);
    const width = (10 + 7.5 * text.length) * scale;
    const height = 18 * scale;
    const badge = document.createElementNS(SVG, 'g');
    badge.setAttribute('class', 'badge-count');
    const rect = document.createElementNS(SVG, 'rect');
    rect.setAttribute('x', String(box.x + box.width - width / 2 - 2));
    rect.setAttribute('y', String(box.y - height / 2));
    rect.setAttribute('width', String(width));
    rect.setAttribute('height', String(height));
    rect.setAttribute('rx', String(height / 2));
    const label = document.createElementNS(SVG, 'text');
    label.setAttribute('x', String(box.x + box.width - 2));
    label.setAttribute('y', String(box.y + 4.5 * scale));
    label.setAttribute('font-size', String(12 * scale));
    label.setAttribute('text-anchor', 'middle');
    label.textContent = text;
    badge.append(rect, label);
    group.append(badge);
  }
}

function applyHighlight() {
  const svg = state.svgs.get(state.current);
  if (svg === undefined) return;
  const view = state.view;
  const shown = view && `${view.domain}.${view.aggregate}` === state.current;
  const active = new Set(shown ? view.activeStates : []);
  for (const group of svg.querySelectorAll('[data-state]')) {
    group.classList.toggle('active', active.has(group.dataset.state));
  }
  const event = shown ? view.event?.type : undefined;
  for (const group of svg.querySelectorAll('g.edge[data-head]')) {
    const label = group.dataset.label ?? '';
    const taken =
      event !== undefined &&
      active.has(group.dataset.head) &&
      (label === event || label.startsWith(`${event} `));
    group.classList.toggle('taken', taken);
  }
}

function showDiagramError(text) {
  const box = $('#diagram-error');
  box.textContent = text;
  box.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// One aggregate, replayed by the server from its stream at any version

function setUpForms() {
  $('#open-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $('#aggregate-id').value.trim();
    if (id !== '') window.location.hash = `#/${state.current}/${encodeURIComponent(id)}`;
  });
  let timer;
  $('#version').addEventListener('input', () => {
    const version = Number($('#version').value);
    state.following = version === Number($('#version').max);
    updateVersionLabel(version, Number($('#version').max));
    clearTimeout(timer);
    timer = setTimeout(() => void loadVersion(state.following ? undefined : version), 60);
  });
  $('#latest').addEventListener('click', () => {
    state.following = true;
    void loadVersion(undefined);
  });
  $('#send-command').addEventListener('change', () => fillExample());
  $('#send-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void sendCommand();
  });
}

async function openAggregate(domain, aggregate, id) {
  state.open = { domain, aggregate, id };
  state.following = true;
  $('#aggregate-id').value = id;
  $('#send-id').value = id;
  $('#aggregate').hidden = false;
  $('#aggregate-title').textContent = `${aggregate} ${id}`;
  await loadVersion(undefined);
}

function closeAggregate() {
  state.open = null;
  state.view = null;
  $('#aggregate').hidden = true;
  applyHighlight();
}

async function loadVersion(version) {
  const open = state.open;
  if (open === null) return;
  const seq = ++state.requestSeq;
  const path = ['api', 'aggregate', open.domain, open.aggregate, open.id]
    .map(encodeURIComponent)
    .join('/');
  try {
    const view = await getJson(`/${path}${version === undefined ? '' : `?version=${version}`}`);
    if (seq !== state.requestSeq || state.open !== open) return;
    $('#aggregate-error').hidden = true;
    renderAggregate(view);
  } catch (error) {
    if (seq !== state.requestSeq) return;
    const box = $('#aggregate-error');
    box.textContent = message(error);
    box.hidden = false;
  }
}

function renderAggregate(view) {
  state.view = view;
  const slider = $('#version');
  slider.max = String(view.latestVersion);
  slider.value = String(view.version);
  updateVersionLabel(view.version, view.latestVersion);
  const live = view.live
    ? `${view.live.lifecycle}, version ${view.live.version}, mailbox ${view.live.mailboxDepth}`
    : 'not active on this node';
  facts($('#aggregate-summary'), [
    ['state', typeof view.value === 'string' ? view.value : JSON.stringify(view.value), 'state'],
    ['status', view.status, 'status'],
    ['event', view.event ? `${view.event.type} (version ${view.version})` : '—', 'event'],
    ['commit position', String(view.position), 'position'],
    ['actor', live, 'live'],
  ]);
  $('#context').textContent = JSON.stringify(view.context, null, 2);
  const body = $('#history tbody');
  body.replaceChildren(
    ...view.history.map((event) => {
      const row = document.createElement('tr');
      const version = event.meta.version;
      row.dataset.version = String(version);
      if (version === view.version) row.className = 'current';
      else if (version > view.version) row.className = 'later';
      cells(row, [
        String(version),
        event.type,
        JSON.stringify(event.data),
        new Date(event.meta.timestamp).toLocaleString(),
        event.meta.commandId,
      ]);
      row.children[2].className = 'data';
      row.addEventListener('click', () => {
        state.following = version === view.latestVersion;
        void loadVersion(state.following ? undefined : version);
      });
      return row;
    }),
  );
  const first = view.history[0]?.meta.version ?? 1;
  $('#history-note').textContent =
    view.latestVersion === 0
      ? '(none stored: the aggregate starts in its initial state)'
      : first > 1
        ? `(the latest ${view.history.length} of ${view.latestVersion})`
        : `(${view.latestVersion})`;
  if (`${view.domain}.${view.aggregate}` === state.current) applyHighlight();
}

function updateVersionLabel(version, latest) {
  $('#version-label').textContent = `${version} of ${latest}`;
}

// ---------------------------------------------------------------------------------------------
// Commands from the page (only when the node runs with --inspect-commands)

function fillCommands(machine) {
  const select = $('#send-command');
  if (machine.kind !== 'aggregate' || select.dataset.key === machine.key) return;
  select.dataset.key = machine.key;
  select.replaceChildren(
    ...machine.commands.map((command) => {
      const option = document.createElement('option');
      option.value = command.name;
      option.textContent = command.name;
      return option;
    }),
  );
  fillExample();
}

function fillExample() {
  const machine = state.machines.get(state.current);
  const command = machine?.commands?.find((c) => c.name === $('#send-command').value);
  $('#send-input').value = command?.example ?? '{}';
}

async function sendCommand() {
  const machine = state.machines.get(state.current);
  const out = $('#send-result');
  out.className = '';
  let input;
  try {
    input = JSON.parse($('#send-input').value.trim() || '{}');
  } catch (error) {
    out.className = 'failed';
    out.textContent = `The input is not JSON: ${message(error)}`;
    return;
  }
  const id = $('#send-id').value.trim();
  const response = await fetch('/api/commands', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      domain: machine.domain,
      aggregate: machine.name,
      id,
      command: $('#send-command').value,
      input,
    }),
  });
  const body = await response.json();
  if (!response.ok) {
    out.className = 'failed';
    out.textContent = `${body.error?.code}: ${body.error?.message}`;
    return;
  }
  out.className = 'ok';
  out.textContent = `stored: version ${body.version}${body.duplicate ? ' (duplicate)' : ''}`;
  const open = state.open;
  if (open === null || open.id !== id || open.aggregate !== machine.name) {
    window.location.hash = `#/${machine.key}/${encodeURIComponent(id)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Live updates: server-sent events while the page is open

function connect() {
  const badge = $('#connection');
  const source = new EventSource('/api/events');
  source.addEventListener('open', () => {
    badge.textContent = 'live';
    badge.className = 'badge on';
  });
  source.addEventListener('error', () => {
    badge.textContent = 'reconnecting…';
    badge.className = 'badge off';
  });
  source.addEventListener('stats', (event) => renderStats(JSON.parse(event.data)));
  source.addEventListener('feed', (event) => renderFeed(JSON.parse(event.data)));
}

function renderStats(stats) {
  state.counts = stats.states;
  const n = stats.node;
  facts($('#node-stats'), [
    ['active actors', n.active, 'active'],
    ['spawned', n.spawned, 'spawned'],
    ['passivated', n.passivated, 'passivated'],
    ['restarts', n.restarts, 'restarts'],
    ['failed', n.failed, 'failed'],
    ['mailbox depth', n.mailboxDepth, 'mailbox'],
    ['dead letters', n.deadLetters, 'dead-letters'],
    ['pages open', stats.pages, 'pages'],
  ]);
  const rows = Object.entries(stats.reactors).map(([name, r]) => {
    const row = document.createElement('tr');
    const runs = r.here === false ? `standby${r.leader ? ` (${r.leader})` : ''}` : 'here';
    cells(row, [name, r.handled, r.retries, r.deadLetters, r.inFlight, r.blocked, r.lag, runs]);
    return row;
  });
  if (rows.length === 0) {
    const row = document.createElement('tr');
    const cell = document.createElement('td');
    cell.colSpan = 8;
    cell.className = 'note';
    cell.textContent = 'no reactors on this node';
    row.append(cell);
    rows.push(row);
  }
  $('#reactor-stats tbody').replaceChildren(...rows);
  for (const button of document.querySelectorAll('nav button')) {
    const machine = state.machines.get(button.dataset.key);
    const counts = state.counts[button.dataset.key] ?? {};
    const root = machine?.graph.nodes.find((node) => node.id === machine.graph.root);
    const total = (root?.children ?? []).reduce((sum, id) => sum + (counts[id] ?? 0), 0);
    button.querySelector('.count').textContent = total > 0 ? String(total) : '';
  }
  applyCounts();
}

function renderFeed({ items, dropped }) {
  const list = $('#feed');
  let refresh = false;
  for (const item of items) {
    const li = document.createElement('li');
    const time = document.createElement('time');
    time.textContent = clock(item.at);
    const kind = document.createElement('span');
    kind.className = 'kind';
    const what = document.createElement('span');
    what.className = 'what';
    const target = `${item.aggregate} ${item.id}`;
    switch (item.kind) {
      case 'command':
        li.className = 'command';
        kind.textContent = 'command';
        what.textContent = `${target} ${item.command} ${JSON.stringify(item.input)}`;
        break;
      case 'reply':
        li.className = item.ok ? 'ok' : 'failed';
        kind.textContent = item.ok ? 'reply' : 'rejected';
        what.textContent = item.ok
          ? `${target} ${item.command} → version ${item.version}${item.duplicate ? ' (duplicate)' : ''}`
          : `${target} ${item.command}: ${item.error.code} ${item.error.message}`;
        break;
      case 'commit':
        li.className = 'commit';
        kind.textContent = 'events';
        what.textContent = `${target} @${item.version}: ${item.events
          .map((e) => `${e.type} ${JSON.stringify(e.data)}`)
          .join(
            ', ',
          )} → ${typeof item.value === 'string' ? item.value : JSON.stringify(item.value)}`;
        break;
    }
    li.dataset.kind = item.kind;
    li.append(time, kind, what);
    if (item.domain) {
      li.addEventListener('click', () => {
        window.location.hash = `#/${item.domain}.${item.aggregate}/${encodeURIComponent(item.id)}`;
      });
    }
    list.prepend(li);
    const open = state.open;
    if (
      item.kind === 'commit' &&
      open !== null &&
      item.domain === open.domain &&
      item.aggregate === open.aggregate &&
      item.id === open.id
    ) {
      refresh = true;
    }
  }
  if (refresh) void loadVersion(state.following ? undefined : state.view?.version);
  while (list.children.length > FEED_LIMIT) list.lastElementChild.remove();
  if (dropped > 0) $('#feed-note').textContent = `(${dropped} not shown: too many at once)`;
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  const body = await response.json();
  if (!response.ok)
    throw new Error(`${body.error?.code ?? response.status}: ${body.error?.message}`);
  return body;
}

function facts(list, entries) {
  list.replaceChildren(
    ...entries.flatMap(([label, value, name]) => {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = String(value);
      dd.dataset.fact = name;
      return [dt, dd];
    }),
  );
}

function cells(row, values) {
  for (const value of values) {
    const cell = document.createElement('td');
    cell.textContent = String(value);
    row.append(cell);
  }
}

function clock(at) {
  const date = new Date(at);
  return `${date.toTimeString().slice(0, 8)}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

function message(error) {
  return error instanceof Error ? error.message : String(error);
}
