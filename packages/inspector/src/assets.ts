// The page's only script and stylesheet, served from the inspector itself so the CSP can say 'self'.

/**
 * Puts rows the server renders (already escaped) on top as they arrive over server-sent events,
 * redraws rows and the delivery timeline after each attempt.
 */
export const appJs = `'use strict';
const rows = document.querySelector('tbody[data-stream]');
if (rows) {
  const source = new EventSource(rows.dataset.stream);
  source.addEventListener('open', () => (rows.dataset.live = 'open'));
  source.addEventListener('error', () => (rows.dataset.live = 'retrying'));
  source.addEventListener('row', (e) => {
    document.getElementById('no-events')?.remove();
    rows.insertAdjacentHTML('afterbegin', e.data);
  });
  source.addEventListener('update', (e) => {
    const parsed = document.createElement('tbody');
    parsed.innerHTML = e.data;
    const fresh = parsed.firstElementChild;
    const row = [...rows.querySelectorAll('tr[data-event]')].find((r) => r.dataset.event === fresh?.dataset.event);
    if (row && fresh) row.replaceWith(fresh);
  });
  source.addEventListener('end', () => source.close());
}
const timeline = document.getElementById('timeline');
if (timeline) {
  const source = new EventSource(timeline.dataset.stream);
  source.addEventListener('open', () => (timeline.dataset.live = 'open'));
  source.addEventListener('timeline', (e) => (timeline.innerHTML = e.data));
  source.addEventListener('end', () => source.close());
}
`;

export const appCss = `body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header strong{font-size:16px}
main{padding:16px 20px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{background:#eef1f5;font-weight:600}code,pre{font:12px/1.45 ui-monospace,monospace}
pre{background:#fff;border:1px solid #e3e6eb;padding:10px;overflow:auto;max-height:480px}
form.filters{display:flex;gap:8px;margin-bottom:12px}input,select,button{font:inherit;padding:3px 6px}
.state{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e3e6eb}
.state-delivered{background:#d4f2dc}.state-pending{background:#fff1c2}.state-failed{background:#ffd6d6}
.state-offline{background:#ffd6d6}.state-held{background:#ffe7b3}.state-online{background:#d4f2dc}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{font-weight:600}dd{margin:0}
.muted{color:#6b7385}.error{color:#a01818}nav.pages{margin-top:10px}
`;
