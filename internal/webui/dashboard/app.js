// p2pd dashboard: polls the admin API (/v1/...) and renders nodes, files,
// statistics and the chunk map of the selected file. No framework and no
// build step; the page is served embedded from the origin.
'use strict';

const TOKEN_KEY = 'p2pd-admin-token';
const REFRESH_MS = 2000;
// Files with more chunks are drawn with one cell per group of chunks, so
// the map stays readable and the page light for 100 GB files.
const MAX_CELLS = 1024;
const PALETTE = ['#2563eb', '#16a34a', '#db2777', '#ea580c', '#7c3aed', '#0891b2', '#ca8a04', '#dc2626', '#4f46e5', '#059669'];

let token = sessionStorage.getItem(TOKEN_KEY) || '';
let selected = '';
let traceID = '';
let timer = 0;
let refreshes = 0;

class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The token may come once in the URL fragment (never sent to the server):
// /ui/#token=TOKEN&file=NAME&trace=ID. It is kept for the tab's session only.
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has('token')) {
    token = p.get('token');
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  if (p.has('file')) selected = p.get('file');
  if (p.has('trace')) traceID = p.get('trace').trim().toLowerCase();
  writeHash();
}

function writeHash() {
  const p = new URLSearchParams();
  if (selected) p.set('file', selected);
  if (traceID) p.set('trace', traceID);
  const h = p.toString();
  history.replaceState(null, '', h ? '#' + h : location.pathname + location.search);
}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
  let body = {};
  try { body = await resp.json(); } catch (_) { /* not JSON: keep the status */ }
  if (!resp.ok) throw new APIError(resp.status, body.code || 'http_' + resp.status, body.message || resp.statusText);
  return body;
}

// el builds an element; text is always set as text, never parsed as HTML,
// so file and node names cannot inject markup.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style') Object.assign(e.style, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

function num(v) { return Number(v || 0); }

function bytes(v) {
  let n = num(v);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + units[i];
}

function since(ts) {
  if (!ts) return '';
  let s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  if (s < 60) return Math.floor(s) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd';
}

function encodeName(name) { return name.split('/').map(encodeURIComponent).join('/'); }

function setStatus(text, isError) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.className = isError ? 'error' : 'muted';
}

function showLogin(why) {
  document.getElementById('main').hidden = true;
  document.getElementById('login').hidden = false;
  document.getElementById('login-why').textContent = why;
  setStatus('not signed in', true);
}

async function refresh() {
  clearTimeout(timer);
  if (!token) {
    showLogin('The admin API needs the admin token (the server\'s --admin-token-file or P2PD_ADMIN_TOKEN).');
    return;
  }
  try {
    const [nodes, files, stats] = await Promise.all([api('/v1/nodes'), api('/v1/files'), api('/v1/stats')]);
    let detail = null;
    if (selected) {
      try {
        detail = await api('/v1/files/' + encodeName(selected) + '?chunkMap=true');
      } catch (e) {
        if (e.code !== 'not_published') throw e;
        selected = '';
        writeHash();
      }
    }
    document.getElementById('login').hidden = true;
    document.getElementById('main').hidden = false;
    renderStats(stats);
    renderNodes(nodes.nodes || []);
    renderFiles(files.files || [], nodes.nodes || []);
    renderDetail(detail);
    setStatus('live · updated ' + new Date().toLocaleTimeString(), false);
    document.body.dataset.refreshes = String(++refreshes);
  } catch (e) {
    if (e.status === 401 || e.code === 'admin_disabled') {
      showLogin(e.message);
      return;
    }
    setStatus(e.message, true);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function card(key, value, id) {
  return el('div', { class: 'card', id: id }, el('div', { class: 'v' }, value), el('div', { class: 'k' }, key));
}

function renderStats(s) {
  const roles = s.nodesByRole || {};
  const cards = [
    card('origins / cachenodes / edges', `${roles.origin || 0} / ${roles.cachenode || 0} / ${roles.edge || 0}`, 'stat-nodes'),
    card('published files', `${num(s.files)} · ${bytes(s.publishedBytes)}`, 'stat-files'),
    card('cached', `${bytes(s.cachedBytes)}` + (num(s.cacheCapacityBytes) ? ` of ${bytes(s.cacheCapacityBytes)}` : ''), 'stat-cached'),
    card('cache replication', num(s.cacheReplication).toFixed(2) + '×', 'stat-replication'),
    card('active streams', num(s.activeStreams), 'stat-streams'),
    card('origin egress', bytes(s.originEgressBytes), 'stat-egress'),
  ];
  const src = s.bytesServedBySource || {};
  if (Object.keys(src).length) {
    cards.push(card('cachenode hit ratio', (100 * num(s.hitRatio)).toFixed(1) + '%', 'stat-hits'));
    for (const [k, v] of Object.entries(src).sort()) cards.push(card('served from ' + k, bytes(v)));
  }
  cards.push(card('sent to viewers', bytes(s.edgeBytesSent), 'stat-edge-sent'));
  // Traffic is summed over every node's counters; say when some are missing.
  const missing = s.metricsMissing || [];
  const sources = card('counters from', `${num(s.metricsSources)} processes` + (missing.length ? ` · ${missing.length} nodes unreachable` : ''), 'stat-sources');
  if (missing.length) sources.title = 'no answer from the ops listener of ' + missing.join(', ');
  cards.push(sources);
  document.getElementById('stats').replaceChildren(...cards);
}

function renderNodes(nodes) {
  document.getElementById('node-count').textContent = `(${nodes.length} live)`;
  const rows = nodes.map(n => el('tr', { dataset: { node: n.id } },
    el('td', { class: 'name' }, n.id),
    el('td', null, n.role),
    el('td', null, el('span', { class: 'badge ' + (num(n.load) > 0 ? 'busy' : 'up') }, num(n.load) > 0 ? 'serving' : 'up')),
    el('td', null, el('code', null, n.grpcAddr || '')),
    el('td', null, el('code', null, n.httpAddr || '')),
    el('td', { title: n.upSince || '' }, since(n.upSince)),
    el('td', { class: 'version' }, n.version || '–'),
    el('td', { class: 'num' }, num(n.load)),
    el('td', { class: 'num', title: 'measured by the nodes that fetched from it' }, num(n.rateBytesPerSecond) ? bytes(n.rateBytesPerSecond) + '/s' : '–'),
    el('td', { class: 'num' }, bytes(n.heldBytes) + (num(n.capacityBytes) ? ' / ' + bytes(n.capacityBytes) : '')),
    el('td', { class: 'num' }, num(n.files)),
    el('td', { class: 'num' }, num(n.chunks)),
  ));
  document.querySelector('#nodes tbody').replaceChildren(...rows);
}

function renderFiles(files, nodes) {
  document.getElementById('file-count').textContent = `(${files.length})`;
  // Any node with a viewers' address can play: edges, and in a single
  // p2pd process the server and caches themselves.
  const edge = nodes.find(n => n.role === 'edge' && n.httpAddr) || nodes.find(n => n.httpAddr);
  const rows = files.map(f => {
    const watch = edge && (f.contentType || '').match(/^(video|audio)\//)
      ? el('a', { href: `http://${edge.httpAddr}/?watch=${encodeURIComponent(f.name)}`, target: '_blank', rel: 'noopener' }, 'watch')
      : null;
    return el('tr', {
      class: 'selectable' + (f.name === selected ? ' selected' : ''),
      dataset: { file: f.name },
      onclick: () => { selected = f.name; writeHash(); refresh(); },
    },
    el('td', { class: 'name' }, f.name),
    el('td', null, f.contentType),
    el('td', { class: 'num' }, bytes(f.size)),
    el('td', { class: 'num' }, num(f.chunkCount)),
    el('td', { class: 'num', title: `${num(f.cachedChunks)} chunks cached` }, `${num(f.cachedOnNodes)} nodes`),
    el('td', { title: f.root }, el('code', null, (f.root || '').slice(0, 12))),
    el('td', { title: f.publishedTime || '' }, f.publishedTime ? since(f.publishedTime) + ' ago' : ''),
    el('td', null, watch));
  });
  document.querySelector('#files tbody').replaceChildren(...rows);
}

// showTrace loads one trace through the admin API (which reads the trace
// store) and draws it as a waterfall: one row per span, children under
// their parent, bars on a common time axis.
async function showTrace() {
  const info = document.getElementById('trace-info');
  const fall = document.getElementById('waterfall');
  document.getElementById('span-attrs').hidden = true;
  if (!traceID) {
    info.textContent = 'Every edge response carries an X-Trace-Id header; paste one to see where its time went.';
    fall.replaceChildren();
    return;
  }
  document.getElementById('trace-id').value = traceID;
  info.textContent = 'loading trace ' + traceID + '…';
  info.className = 'muted';
  let t;
  try {
    t = await api('/v1/traces/' + encodeURIComponent(traceID));
  } catch (e) {
    info.textContent = e.message;
    info.className = 'error';
    fall.replaceChildren();
    return;
  }
  const spans = t.spans || [];
  const start = s => Date.parse(s.start) * 1000 + (Number((s.start.match(/\.(\d+)/) || ['', ''])[1].padEnd(9, '0').slice(3, 6)) || 0);
  const t0 = Math.min(...spans.map(start));
  const end = Math.max(...spans.map(s => start(s) + num(s.durationUs)));
  const total = Math.max(1, end - t0);
  const services = [...new Set(spans.map(s => s.service))];
  info.textContent = `${spans.length} spans · ${services.join(', ')} · ${(total / 1000).toFixed(2)} ms`;
  // Depth-first from the roots (spans whose parent is not in the trace).
  const ids = new Set(spans.map(s => s.spanId));
  const children = new Map();
  for (const s of spans) {
    const p = ids.has(s.parentSpanId) ? s.parentSpanId : '';
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(s);
  }
  const rows = [];
  const walk = (parent, depth) => {
    for (const s of (children.get(parent) || []).sort((a, b) => start(a) - start(b))) {
      const color = PALETTE[services.indexOf(s.service) % PALETTE.length];
      const row = el('div', {
        class: 'span' + (s.error ? ' error' : ''),
        dataset: { span: s.spanId, service: s.service, depth: String(depth) },
        title: `${s.service}: ${s.name}`,
        onclick: () => showAttrs(row, s),
      },
      el('span', { class: 'label', style: { paddingLeft: depth + 'em' } }, `${s.service} · ${s.name}`),
      el('span', { class: 'lane' }, el('span', { class: 'bar', style: {
        left: (100 * (start(s) - t0) / total) + '%', width: (100 * num(s.durationUs) / total) + '%', background: color,
      } })),
      el('span', { class: 'dur' }, (num(s.durationUs) / 1000).toFixed(2) + ' ms'));
      rows.push(row);
      walk(s.spanId, depth + 1);
    }
  };
  walk('', 0);
  fall.replaceChildren(...rows);
}

function showAttrs(row, s) {
  for (const r of document.querySelectorAll('.span.selected')) r.classList.remove('selected');
  row.classList.add('selected');
  const dl = document.getElementById('span-attrs');
  const items = [['service', s.service], ['operation', s.name], ['start', s.start], ['duration', num(s.durationUs) + ' µs'], ['span', s.spanId]];
  for (const [k, v] of Object.entries(s.attributes || {}).sort()) items.push([k, v]);
  dl.replaceChildren(...items.flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)]));
  dl.hidden = false;
}

function decodeBits(b64) {
  const s = atob(b64 || '');
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function renderDetail(d) {
  const section = document.getElementById('detail');
  if (!d) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const f = d.file;
  const n = num(f.chunkCount);
  const per = Math.max(1, Math.ceil(n / MAX_CELLS));
  document.getElementById('detail-name').textContent = f.name;
  document.getElementById('detail-info').textContent =
    `${bytes(f.size)} · ${n} chunks of ${bytes(f.chunkSize)}` + (per > 1 ? ` · one cell per ${per} chunks` : '') +
    ` · root ${f.root} · ETag ${f.etag}`;
  const rows = (d.holders || []).map((h, i) => {
    const color = PALETTE[i % PALETTE.length];
    const bits = decodeBits(h.chunkMap);
    const cells = [];
    for (let first = 0; first < n; first += per) {
      const last = Math.min(n, first + per);
      let held = 0;
      for (let c = first; c < last; c++) if (bits[c >> 3] & (1 << (c & 7))) held++;
      const props = {
        class: 'cell' + (held === last - first ? ' held' : held ? ' partial' : ''),
        dataset: { chunk: String(first) },
        title: `${h.nodeId}: chunk${per > 1 ? 's ' + first + '–' + (last - 1) : ' ' + first} ${held ? 'held' : 'missing'}`,
      };
      if (held) props.style = { background: color, opacity: String(0.35 + 0.65 * held / (last - first)) };
      cells.push(el('div', props));
    }
    return el('div', { class: 'maprow', dataset: { node: h.nodeId, role: h.role } },
      el('span', { class: 'label', title: h.nodeId }, `${h.nodeId} (${h.role}) ${num(h.chunks)}/${n}`),
      el('div', { class: 'cells' }, ...cells));
  });
  if (!rows.length) rows.push(el('p', { class: 'muted' }, 'No node holds chunks of this file yet.'));
  document.getElementById('chunkmap').replaceChildren(...rows);
}

document.addEventListener('DOMContentLoaded', () => {
  readHash();
  document.getElementById('login').addEventListener('submit', ev => {
    ev.preventDefault();
    token = document.getElementById('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    refresh();
  });
  document.getElementById('change-token').addEventListener('click', () => {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    refresh();
  });
  document.getElementById('trace-form').addEventListener('submit', ev => {
    ev.preventDefault();
    traceID = document.getElementById('trace-id').value.trim().toLowerCase();
    writeHash();
    showTrace();
  });
  window.addEventListener('hashchange', () => { readHash(); refresh(); showTrace(); });
  refresh().then(showTrace);
});
