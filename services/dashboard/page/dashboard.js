// The dashboard page: polls the server's /api endpoints and draws with uPlot (loaded before this
// file). What it shows last is kept in window.brabantDashboard (the browser test reads it).

const COLORS = ['#2f6fdf', '#d9480f', '#2b8a3e', '#9c36b5', '#e67700', '#0b7285', '#c2255c', '#5c940d'];
const plots = {};
const state = { status: null, series: null, rounds: 0 };
window.brabantDashboard = state;

const esc = (s) =>
  String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const json = (v) => `<code>${esc(v === null || v === undefined ? '(none)' : JSON.stringify(v))}</code>`;

async function get(path) {
  const res = await fetch(path, { cache: 'no-store' });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function service(s) {
  if (!s.reachable) return `<span class="gone">GONE</span> <span class="muted">${esc(s.error)}</span>`;
  if (s.ready === false)
    return `<span class="warn">not streaming</span> <span class="muted">${esc(s.readyDetail)}</span>`;
  return '<span class="ok">streaming</span>';
}

function renderStatus(r) {
  const v = document.getElementById('verdict');
  v.className = `verdict ${r.verdict.state}`;
  v.textContent = r.verdict.state === 'healthy' ? 'healthy' : `${r.verdict.state}: ${r.verdict.reasons[0]}`;
  v.title = r.verdict.reasons.join('\n');
  document.getElementById('updated').textContent = `as of ${r.at}`;
  let html =
    '<table><tr><th>region</th><th>router</th><th>node</th><th>database</th><th>capture</th><th>apply</th><th>lag</th></tr>';
  const paused = [];
  for (const g of r.regions) {
    const router =
      g.router === undefined
        ? '-'
        : g.router.reachable
          ? `leader <b>${esc(g.router.leader ?? 'NONE')}</b>`
          : `<span class="gone">GONE</span> <span class="muted">${esc(g.router.error)}</span>`;
    for (const [i, n] of g.nodes.entries()) {
      const db = n.database.reachable
        ? '<span class="ok">up</span>'
        : `<span class="gone">GONE</span> <span class="muted">${esc(n.database.error)}</span>`;
      const lag = n.apply.origins
        .map((o) => `${esc(o.source)}: ${o.lagSeconds === null ? '-' : `${o.lagSeconds.toFixed(2)} s`}`)
        .join('<br>');
      html += `<tr data-node="${esc(n.id)}"><td>${i === 0 ? esc(g.name) : ''}</td><td>${i === 0 ? router : ''}</td><td><b>${esc(n.id)}</b></td><td>${db}</td><td>${service(n.capture)}</td><td>${service(n.apply)}</td><td>${lag}</td></tr>`;
      for (const p of n.apply.pausedStreams)
        paused.push(`${esc(n.id)}: stream ${esc(p.topic)}/${esc(p.partition)} paused (${esc(p.reason)})`);
      for (const t of n.capture.pausedTables) paused.push(`${esc(n.id)}: table ${esc(t)} paused`);
      for (const d of n.pendingDdl)
        paused.push(`${esc(n.id)}: DDL of ${esc(d.source)} waits: ${esc(d.statement)} — ${esc(d.reason)}`);
    }
    if (g.deadLetters !== undefined)
      html += `<tr><td></td><td colspan="6" class="muted">dead letters in ${esc(g.name)}'s cluster: ${g.deadLetters.open} open of ${g.deadLetters.total}</td></tr>`;
  }
  document.getElementById('regions').innerHTML = `${html}</table>`;
  document.getElementById('paused').innerHTML =
    paused.length === 0 ? '<span class="muted">none</span>' : paused.join('<br>');
}

function plot(id, series, scale = 1) {
  const el = document.getElementById(id);
  const data = [
    series.data[0],
    ...series.data.slice(1).map((ys) => ys.map((y) => (y === null ? null : y / scale))),
  ];
  const key = series.labels.join('|');
  let p = plots[id];
  if (p === undefined || p.key !== key) {
    if (p !== undefined) p.chart.destroy();
    const opts = {
      width: Math.max(300, el.clientWidth || 500),
      height: 200,
      series: [
        {},
        ...series.labels.map((l, i) => ({
          label: l,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          spanGaps: false,
        })),
      ],
      axes: [{}, { size: 60 }],
      scales: { x: { time: true } },
    };
    p = { key, chart: new uPlot(opts, data, el) };
    plots[id] = p;
  } else p.chart.setData(data);
}

function renderSeries(s) {
  plot('plot-lag', s.lagSeconds);
  plot('plot-rows', s.rowsPerSecond);
  plot('plot-conflicts', s.conflictsPerSecond);
  plot('plot-wal', s.retainedWalBytes, 1024 * 1024);
}

function renderConflicts(c) {
  const rows = c.rows.map(
    (x) =>
      `<tr><td>${esc(x.loggedAt)}<br><span class="muted">on ${esc(x.node)}</span></td><td>${esc(x.table)} ${json(x.key)}</td><td><b>${esc(x.kind)}</b> → ${esc(x.resolution)}<br><span class="muted">policy ${esc(x.policy ?? 'row_lww')}</span></td><td>local (${esc(x.local.node ?? '-')}, ${esc(x.local.commitTs ?? '-')}): ${json(x.local.row)}<br>remote (${esc(x.remote.node)}, ${esc(x.remote.commitTs)}): ${json(x.remote.row)}</td></tr>`,
  );
  const gone = c.unreachable
    .map((u) => `<div class="gone">${esc(u.node)}: GONE (${esc(u.error)})</div>`)
    .join('');
  document.getElementById('conflicts').innerHTML =
    gone +
    (rows.length === 0
      ? '<span class="muted">none</span>'
      : `<table><tr><th>when</th><th>row</th><th>kind → resolution</th><th>both versions</th></tr>${rows.join('')}</table>`);
}

function renderDeadLetters(d) {
  const rows = d.deadLetters.map(
    (x) =>
      `<tr><td><code>${esc(x.id)}</code><br><span class="muted">${esc(x.at)}</span></td><td>${esc(x.kind)}</td><td>${esc(x.table ?? '-')}<br><span class="muted">from ${esc(x.source)}</span></td><td>${esc(x.reason)}</td><td>${esc(x.state)}</td></tr>`,
  );
  document.getElementById('deadletters').innerHTML =
    rows.length === 0
      ? '<span class="muted">none</span>'
      : `<table><tr><th>id</th><th>kind</th><th>table</th><th>reason</th><th>state</th></tr>${rows.join('')}</table>`;
}

async function tick() {
  try {
    const [status, series] = await Promise.all([get('/api/status'), get('/api/series')]);
    state.status = status;
    state.series = series;
    if (status) renderStatus(status);
    renderSeries(series);
    if (state.rounds % 3 === 0) {
      const [c, d] = await Promise.all([get('/api/conflicts'), get('/api/deadletters')]);
      renderConflicts(c);
      renderDeadLetters(d);
    }
    state.rounds++;
  } catch (err) {
    document.getElementById('updated').textContent = `the dashboard server does not answer: ${err.message}`;
    console.error(`dashboard: ${err.message}`);
  }
  setTimeout(tick, 2000);
}

tick();
