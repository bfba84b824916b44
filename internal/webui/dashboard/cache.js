// p2pd dashboard: prewarm and purge the selected file (POST /v1/prewarm,
// /v1/purge), then follow the holders until the cachenodes are done. The
// chunk map (app.js) shows the same progress cell by cell. Uses app.js's
// token, selected, api, el, bytes and refresh.
'use strict';

const WATCH_MS = 1000;
let watching = 0;     // the timer of the progress being followed
let purgeArmed = 0;   // a first click on Purge arms it for a few seconds

async function post(path, body) {
  const resp = await fetch(path, {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    cache: 'no-store',
  });
  let out = {};
  try { out = await resp.json(); } catch (_) { /* not JSON: keep the status */ }
  if (!resp.ok) throw new APIError(resp.status, out.code || 'http_' + resp.status, out.message || resp.statusText);
  return out;
}

function cacheStatus(text, isError) {
  const s = document.getElementById('cache-status');
  s.textContent = text;
  s.className = isError ? 'error' : 'muted';
}

// The cachenodes to choose from, as checkboxes; checked ones stay checked.
async function listCachenodes() {
  const box = document.getElementById('prewarm-nodes');
  const checked = new Set([...box.querySelectorAll('input:checked')].map(i => i.value));
  const nodes = (await api('/v1/nodes')).nodes || [];
  box.replaceChildren(...nodes.filter(n => n.role === 'cachenode').map(n =>
    el('label', {}, el('input', { type: 'checkbox', value: n.id, checked: checked.has(n.id) || null }), ' ' + n.id)));
}

// follow polls the file until done(file answer) says the work is over,
// showing what progress() says meanwhile.
function follow(name, label, progress) {
  clearTimeout(watching);
  const step = async () => {
    try {
      const d = await api('/v1/files/' + encodeName(name));
      const [text, done] = progress(d);
      cacheStatus(`${label}: ${text}`, false);
      if (done) {
        refresh(); // the chunk map shows the outcome at once
        return;
      }
    } catch (e) {
      cacheStatus(`${label}: ${e.message}`, true);
      return;
    }
    watching = setTimeout(step, WATCH_MS);
  };
  step();
}

function held(d, id) {
  const h = (d.holders || []).find(h => h.nodeId === id);
  return h ? Number(h.chunks) : 0;
}

async function prewarm(ev) {
  ev.preventDefault();
  const name = selected;
  const all = document.querySelector('input[name="prewarm-on"]:checked').value === 'all';
  const nodeIds = [...document.querySelectorAll('#prewarm-nodes input:checked')].map(i => i.value);
  if (!all && !nodeIds.length) {
    cacheStatus('choose at least one cachenode', true);
    return;
  }
  try {
    const r = await post('/v1/prewarm', { name, all, nodeIds: all ? [] : nodeIds });
    const ids = r.nodeIds || [];
    const n = Number(r.file.chunkCount);
    if (!ids.length) {
      cacheStatus('no live cachenode to prewarm', true);
      return;
    }
    follow(name, `prewarm of ${name} on ${ids.length} cachenodes`, d => {
      const got = ids.reduce((s, id) => s + Math.min(held(d, id), n), 0);
      const done = ids.every(id => held(d, id) >= n);
      return [done ? 'done, every chunk on every chosen node' : `${got}/${n * ids.length} chunks`, done];
    });
    refresh();
  } catch (e) {
    cacheStatus('prewarm: ' + e.message, true);
  }
}

// purge asks for a second click within 4 s: it drops what every node
// cached, which costs origin egress to fill again.
async function purge() {
  const button = document.getElementById('purge');
  if (!purgeArmed) {
    button.textContent = 'Really purge?';
    button.classList.add('confirm');
    purgeArmed = setTimeout(disarm, 4000);
    return;
  }
  disarm();
  const name = selected;
  try {
    await post('/v1/purge', { name });
    follow(name, `purge of ${name}`, d => {
      const left = (d.holders || []).filter(h => h.role === 'cachenode').reduce((s, h) => s + Number(h.chunks), 0);
      return [left ? `${left} chunks still cached` : 'done, no cachenode holds a chunk', left === 0];
    });
    refresh();
  } catch (e) {
    cacheStatus('purge: ' + e.message, true);
  }
}

function disarm() {
  clearTimeout(purgeArmed);
  purgeArmed = 0;
  const button = document.getElementById('purge');
  button.textContent = 'Purge';
  button.classList.remove('confirm');
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('cache-actions').addEventListener('submit', prewarm);
  document.getElementById('purge').addEventListener('click', purge);
  for (const r of document.querySelectorAll('input[name="prewarm-on"]')) {
    r.addEventListener('change', () => {
      if (r.value === 'list' && r.checked) listCachenodes().catch(e => cacheStatus(e.message, true));
    });
  }
  // Another file selected: its own progress, not the last one's.
  window.addEventListener('hashchange', () => { clearTimeout(watching); cacheStatus('', false); });
});
