/* The cohort index: review status from this browser's storage, sorting, keyboard navigation,
   and gathering every study's ratings (CSV for cacpipe evaluate --ratings) and corrections
   (JSON for cacpipe review apply). */
'use strict';
(function () {
  const {$} = Cac;
  const D = JSON.parse($('index-data').textContent);

  function allStored(prefix) {
    return Cac.storedKeys(prefix).map((k) => Cac.load(k)).filter((x) => x && x.study_uid);
  }
  function records(onlyRater) {
    const out = [];
    for (const all of allStored(D.storage.ratings)) out.push(...Cac.ratingRecords(all, null, onlyRater));
    return out;
  }
  function corrections(onlyReader) {
    const out = [];
    for (const all of allStored(D.storage.corrections)) out.push(...Cac.correctionDocs(all, D.corrections_schema, onlyReader));
    return out;
  }
  const csv = (who) => Cac.csvText(D.columns, records(who));

  function refresh() {
    const who = $('rater').value.trim();
    for (const row of document.querySelectorAll('tr[data-study]')) {
      const cell = row.querySelector('td.review');
      if (row.classList.contains('failed') || row.classList.contains('skipped')) { cell.textContent = 'n/a'; continue; }
      const uid = row.dataset.study;
      const ratings = Cac.load(D.storage.ratings + uid), corr = Cac.load(D.storage.corrections + uid);
      const nRated = Cac.ratingRecords(ratings, null, who).length;
      const nCorr = Cac.correctionDocs(corr, D.corrections_schema, who).reduce((s, d) => s + d.changes.length, 0);
      const applied = cell.dataset.applied;
      const parts = [];
      if (applied) parts.push('corrected (applied by ' + applied + ')');
      if (nCorr) parts.push('corrected (' + nCorr + ' change(s) in this browser)');
      if (nRated) parts.push('rated (' + nRated + ')');
      cell.textContent = parts.length ? parts.join('; ') : 'pending';
      cell.className = 'review ' + (applied || nCorr ? 'review-corrected' : nRated ? 'review-rated' : 'review-pending');
      cell.dataset.sort = cell.textContent;
    }
  }

  function sortBy(th) {
    const table = $('studies'), idx = [...th.parentNode.children].indexOf(th);
    const dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    for (const h of th.parentNode.children) h.setAttribute('aria-sort', 'none');
    th.setAttribute('aria-sort', dir);
    const num = th.dataset.type === 'num';
    const key = (tr) => {
      const v = tr.children[idx].dataset.sort !== undefined ? tr.children[idx].dataset.sort : tr.children[idx].textContent;
      if (v === '') return null;  // no value (failed, skipped, not assessed): last either way
      return num ? Number(v) : v.toLowerCase();
    };
    const rows = [...table.tBodies[0].rows];
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);
      return (x < y ? -1 : x > y ? 1 : 0) * (dir === 'ascending' ? 1 : -1);
    });
    for (const r of rows) table.tBodies[0].appendChild(r);
  }
  for (const th of document.querySelectorAll('#studies th')) th.querySelector('button').addEventListener('click', () => sortBy(th));
  // Up/Down move between the studies' first focusable cell (their links)
  $('studies').addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const row = e.target.closest('tr[data-study]');
    if (!row) return;
    let next = e.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling;
    while (next && !next.querySelector('a')) next = e.key === 'ArrowDown' ? next.nextElementSibling : next.previousElementSibling;
    if (next) { next.querySelector('a').focus(); e.preventDefault(); }
  });

  window.cacpipeIndex = {records, csv, corrections, refresh, sortBy};
  $('rater').value = localStorage.getItem(D.storage.reader) || '';
  $('rater').addEventListener('input', refresh);
  $('download-all').addEventListener('click', () => {
    const who = $('rater').value.trim();
    Cac.download('ratings_' + Cac.fileSafe(who || 'all') + '.csv', csv(who), 'text/csv');
  });
  $('download-corrections').addEventListener('click', () => {
    const who = $('rater').value.trim();
    Cac.download('corrections_' + Cac.fileSafe(who || 'all') + '.json', JSON.stringify(corrections(who), null, 1), 'application/json');
  });
  refresh();
  document.body.dataset.ready = '1';
})();
