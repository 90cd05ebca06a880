/* The prior study beside the viewer (cacpipe/review/prior.py writes D.prior): the prior CT,
   resampled through the registration onto this page's heart grid, drawn at the slice of the
   viewer's crosshair (the 'cacpipe-cross' event of study.js), in the calcium window with
   >= 130 HU tinted; each lesion event near the slice is ringed and named by its match id.
   Rows of the lesion table select the current lesion in the viewer. */
'use strict';
(function () {
  const R = window.cacpipeReview;
  if (!R || !R.D.prior) return;
  const P = R.D.prior, D = R.D;
  const canvas = document.getElementById('prior-canvas'), caption = document.getElementById('prior-caption');
  const WIN = [-200, 600], THRESH = D.rules.threshold_hu, SCALE = 2;
  let vol = null, lastZ = null;

  function draw(z) {
    lastZ = z;
    if (!vol) return;
    const [nz, ny, nx] = vol.dims, k = Math.round(z - vol.offset[0]);
    const flips = D.ct.flips;
    canvas.width = nx * SCALE; canvas.height = ny * SCALE;
    const ctx = canvas.getContext('2d');
    if (k < 0 || k >= nz) {
      ctx.fillStyle = '#000'; ctx.fillRect(0, 0, canvas.width, canvas.height);
      caption.textContent = 'prior: outside the heart region shown';
      return;
    }
    const img = ctx.createImageData(nx, ny);
    for (let j = 0; j < ny; j++) {
      const jj = flips.rows ? ny - 1 - j : j;
      for (let i = 0; i < nx; i++) {
        const ii = flips.cols ? nx - 1 - i : i;
        const hu = vol.value(k, jj, ii);
        let g = Math.max(0, Math.min(255, (hu - WIN[0]) / (WIN[1] - WIN[0]) * 255));
        const o = 4 * (j * nx + i);
        if (hu >= THRESH) { img.data[o] = 0.5 * g + 127; img.data[o + 1] = 0.5 * g + 30; img.data[o + 2] = 0.5 * g + 20; }
        else { img.data[o] = g; img.data[o + 1] = g; img.data[o + 2] = g; }
        img.data[o + 3] = 255;
      }
    }
    const tmp = document.createElement('canvas');
    tmp.width = nx; tmp.height = ny;
    tmp.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
    const here = [], placed = [];
    ctx.font = 'bold ' + (8 * SCALE) + 'px sans-serif';
    ctx.lineWidth = SCALE;
    for (const e of P.lesions) {
      if (!e.zyx || !e.match_id) continue;
      const dz = Math.abs(e.zyx[0] - z);
      if (dz > Math.max(3, e.extent_vox / 2 + 1)) continue;
      here.push(e.match_id);
      let y = e.zyx[1] - vol.offset[1], x = e.zyx[2] - vol.offset[2];
      if (flips.rows) y = ny - 1 - y;
      if (flips.cols) x = nx - 1 - x;
      const r = Math.max(6, e.extent_vox / 2 + 3) * SCALE;
      ctx.strokeStyle = e.status === 'new' ? '#66ccff' : '#ffdc00';
      ctx.setLineDash(e.status === 'new' ? [4 * SCALE, 3 * SCALE] : []);
      ctx.beginPath(); ctx.arc(x * SCALE, y * SCALE, r, 0, 2 * Math.PI); ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      const label = e.match_id + ' ' + e.status.replace('_', ' '), w = ctx.measureText(label).width, lh = 9 * SCALE;
      const tx = x * SCALE + r + 2 + w <= canvas.width ? x * SCALE + r + 2 : Math.max(0, x * SCALE - r - 2 - w);
      let ty = Math.max(lh, y * SCALE - r / 2);
      while (placed.some((b) => tx < b[0] + b[2] && b[0] < tx + w && ty - lh < b[1] && b[1] - lh < ty)) ty += lh;
      placed.push([tx, ty, w]);
      ctx.fillText(label, tx, ty);
    }
    ctx.setLineDash([]);
    for (const tr of document.querySelectorAll('#prior-lesions tr[data-match]')) tr.classList.toggle('here', here.includes(tr.dataset.match));
    caption.textContent = 'prior ' + (P.study_date ? P.study_date + ' ' : '') + '(' + (P.years === null ? '?' : P.years.toFixed(2)) +
      ' y before), same slice: ' + R.sliceRef(Math.round(z)) + (here.length ? ' \u00b7 ' + here.join(', ') : '') +
      (P.registered ? '' : ' \u00b7 NOT registered');
  }

  document.addEventListener('cacpipe-cross', (ev) => { if (ev.detail && ev.detail.cross) draw(ev.detail.cross[0]); });
  for (const b of document.querySelectorAll('button[data-prior-select]')) {
    b.addEventListener('click', () => {
      const i = D.result.lesions.findIndex((l) => l.name === b.dataset.priorSelect);
      if (i >= 0) R.select(i + 1, true);
    });
  }
  if (!P.volume) { caption.textContent = 'prior image not shown: ' + (P.note || 'not available'); return; }
  CacVolumes.decode(P.volume).then((v) => {
    vol = v;
    const z = lastZ !== null ? lastZ : (R.st.cross ? R.st.cross[0] : vol.offset[0] + Math.floor(vol.dims[0] / 2));
    draw(z);
    document.body.dataset.priorReady = '1';
  }).catch((e) => { caption.textContent = 'prior image could not be shown: ' + e.message; document.body.dataset.priorReady = '1'; });
})();
