/* The page's live numbers, by the project's rules (the values come from the page's data block,
   written by cacpipe/review/page.py from cacpipe.units, cacpipe.quant and cacpipe.review.corrections):
   - growLesion: cacpipe.review.corrections.grow_lesion (snap within SNAP_PX on the slice, 26-connected
     voxels >= 130 HU that are not yet calcium, within GROW_BOX_MM of the seed);
   - lesionStats: the Agatston convention of cacpipe.quant.lesions (2D 8-connected components per
     slice, area >= 1 mm2, weight from the component's peak HU, x slice spacing / 3 mm);
   - scores: cacpipe.quant.validity.finalise + categories + severity (what `cacpipe review apply`
     recomputes; the page's numbers are a preview of it). */
'use strict';
const CacCalcium = (function () {
  function weight(peak, R) {
    let w = 0;
    for (const [lo, wt] of R.weights) if (peak >= lo) w = wt;
    return w;
  }

  // Seed (heart-grid voxel [k, j, i]) -> list of flat indices, or {error}.
  function growLesion(ct, lab, seed, R) {
    const [nz, ny, nx] = ct.dims;
    let [k, j, i] = seed;
    if (!ct.inside(k, j, i)) return {error: 'the click is outside the full-resolution heart region'};
    const thr = R.threshold_hu;
    if (ct.value(k, j, i) < thr) {  // snap: brightest calcium voxel within SNAP_PX on this slice, first in row order
      let best = -Infinity, bj = -1, bi = -1;
      for (let y = Math.max(0, j - R.snap_px); y <= Math.min(ny - 1, j + R.snap_px); y++)
        for (let x = Math.max(0, i - R.snap_px); x <= Math.min(nx - 1, i + R.snap_px); x++) {
          const v = ct.value(k, y, x);
          if (v > best) { best = v; bj = y; bi = x; }
        }
      if (best < thr) return {error: 'no calcium (>= ' + thr + ' HU) within ' + R.snap_px + ' pixels of the click'};
      j = bj; i = bi;
    }
    const calc = new Set(R.calcium_ids);
    if (calc.has(lab[ct.index(k, j, i)])) return {error: 'this voxel is already part of a lesion: reassign or delete that lesion instead'};
    const r = R.grow_radius_vox;  // ceil(GROW_BOX_MM / spacing) per axis
    const lo = [Math.max(0, k - r[0]), Math.max(0, j - r[1]), Math.max(0, i - r[2])];
    const hi = [Math.min(nz - 1, k + r[0]), Math.min(ny - 1, j + r[1]), Math.min(nx - 1, i + r[2])];
    const seen = new Set([ct.index(k, j, i)]);
    const stack = [[k, j, i]];
    const out = [];
    while (stack.length) {
      const [z, y, x] = stack.pop();
      out.push(ct.index(z, y, x));
      for (let dz = -1; dz <= 1; dz++) for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const zz = z + dz, yy = y + dy, xx = x + dx;
        if (zz < lo[0] || zz > hi[0] || yy < lo[1] || yy > hi[1] || xx < lo[2] || xx > hi[2]) continue;
        const q = ct.index(zz, yy, xx);
        if (seen.has(q)) continue;
        seen.add(q);
        if (ct.data[q] * ct.slope + ct.inter >= thr && !calc.has(lab[q])) stack.push([zz, yy, xx]);
      }
    }
    out.sort((a, b) => a - b);
    return {voxels: out, seed: [k, j, i]};
  }

  // Numbers of one lesion given as flat heart-grid indices (all >= threshold).
  function lesionStats(ct, voxels, spacing, R) {
    const [, ny, nx] = ct.dims;
    const [dz, dy, dx] = spacing;
    const bySlice = new Map();
    let peak = -Infinity, sum = 0;
    for (const q of voxels) {
      const k = Math.floor(q / (ny * nx));
      if (!bySlice.has(k)) bySlice.set(k, []);
      bySlice.get(k).push(q);
      const v = ct.data[q] * ct.slope + ct.inter;
      peak = Math.max(peak, v); sum += v;
    }
    let agatston = 0, maxArea = 0, best = null;
    for (const [k, qs] of bySlice) {
      const inSlice = new Set(qs);
      const done = new Set();
      if (qs.length > maxArea) { maxArea = qs.length; best = k; }
      for (const q0 of qs) {  // 2D 8-connected components of this slice
        if (done.has(q0)) continue;
        done.add(q0);
        const st = [q0];
        let n = 0, p = -Infinity;
        while (st.length) {
          const q = st.pop();
          n++; p = Math.max(p, ct.data[q] * ct.slope + ct.inter);
          const y = Math.floor(q / nx) % ny, x = q % nx;
          for (let ddy = -1; ddy <= 1; ddy++) for (let ddx = -1; ddx <= 1; ddx++) {
            const yy = y + ddy, xx = x + ddx;
            if (yy < 0 || xx < 0 || yy >= ny || xx >= nx) continue;
            const r = ct.index(k, yy, xx);
            if (inSlice.has(r) && !done.has(r)) { done.add(r); st.push(r); }
          }
        }
        const area = n * dy * dx;
        if (area >= R.min_area_mm2) agatston += area * weight(p, R);
      }
    }
    const slices = [...bySlice.keys()].sort((a, b) => a - b);
    return {voxels: voxels.length, volume_mm3: voxels.length * dz * dy * dx, peak_hu: peak,
      mean_hu: voxels.length ? sum / voxels.length : null, agatston: agatston * dz / R.ref_slice_mm,
      area_mm2: maxArea * dy * dx, slices: slices, best: best};
  }

  function category(s, R) {
    if (s === null) return null;
    for (let i = 0; i < R.category_upper.length; i++) if (s <= R.category_upper[i]) return R.categories[i];
    return R.categories[R.categories.length - 1];
  }
  function cacDrs(total, vessels) {
    if (total === null) return null;
    const a = total <= 0 ? 0 : total < 100 ? 1 : total < 300 ? 2 : 3;
    if (a === 0) return 'A0';
    return 'A' + a + '/N' + vessels.filter((v) => v !== null && v > 0).length;
  }
  function grade(model, volumeMl) {
    if (!model || volumeMl === null) return null;
    if (volumeMl === 0) return 'none';
    const cum = model.cutpoints.map((c) => 1 / (1 + Math.exp(-(c - model.coef * volumeMl))));
    const probs = [];
    let prev = 0;
    for (const c of cum) { probs.push(c - prev); prev = c; }
    probs.push(1 - prev);
    let best = 0;
    for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
    return model.levels[best];
  }

  // The record's numbers with the reader's changes: an artery no change touches keeps its numbers
  // exactly; otherwise the lesions' Agatston shares and volumes move with them (a lesion's share is
  // its part of the artery's score, so the shares add up to it). lesions: the record's lesions
  // [{orig, artery, deleted, agatston, volume_mm3, peak_hu}]; adds: [{artery, agatston, volume_mm3, peak_hu}].
  function scores(lesions, adds, notAssessable, D) {
    const R = D.rules;
    const arteries = {};
    const clean = (v) => (Math.abs(v) < 1e-9 ? 0 : Math.max(0, v));
    for (const a of D.arteries) {
      const O = D.result.arteries[a];
      const assessed = O.assessed && !notAssessable[a] && !R.study_not_assessable;
      if (!assessed) { arteries[a] = {assessed: false, agatston: null, calcium_volume_mm3: null, lesions: null,
        peak_hu: null, grade: null, agatston_valid: false, changed: O.assessed}; continue; }
      const now = lesions.filter((l) => !l.deleted && l.artery === a).concat(adds.filter((x) => x.artery === a));
      const touched = adds.some((x) => x.artery === a) ||
        lesions.some((l) => (l.orig === a || l.artery === a) && (l.deleted || l.artery !== l.orig));
      if (!touched) { arteries[a] = Object.assign({}, O, {changed: false}); continue; }
      let ag = O.agatston || 0, vol = O.calcium_volume_mm3 || 0, n = O.lesions || 0;
      for (const l of lesions) {
        const was = l.orig === a, is = !l.deleted && l.artery === a;
        if (was && !is) { ag -= l.agatston; vol -= l.volume_mm3; n -= 1; }
        if (!was && is) { ag += l.agatston; vol += l.volume_mm3; n += 1; }
      }
      for (const x of adds) if (x.artery === a) { ag += x.agatston; vol += x.volume_mm3; n += 1; }
      vol = clean(vol);
      arteries[a] = {assessed: true, agatston: clean(ag), calcium_volume_mm3: vol, lesions: Math.max(0, n),
        peak_hu: now.length ? Math.max(...now.map((l) => l.peak_hu)) : null,
        grade: D.severity ? grade(D.severity[a], vol / 1000) : O.grade,
        agatston_valid: !R.contrast && !R.stents.includes(a), changed: true};
    }
    const done = D.arteries.filter((a) => arteries[a].assessed);
    if (!D.arteries.some((a) => arteries[a].changed)) return {arteries, total: Object.assign({}, D.result.total)};
    const total = {agatston: null, calcium_volume_mm3: null, lesions: null, category: null, cac_drs: null,
      complete: false, agatston_valid: false, assessed_arteries: done};
    if (done.length) {
      total.agatston = done.reduce((s, a) => s + arteries[a].agatston, 0);
      total.calcium_volume_mm3 = done.reduce((s, a) => s + arteries[a].calcium_volume_mm3, 0);
      total.lesions = done.reduce((s, a) => s + arteries[a].lesions, 0);
      total.complete = done.length === D.arteries.length;
      total.agatston_valid = total.complete && !R.contrast && R.stents.length === 0;
      if (total.agatston_valid) {
        total.category = category(total.agatston, R);
        total.cac_drs = cacDrs(total.agatston, done.map((a) => arteries[a].agatston));
      }
    }
    return {arteries, total};
  }

  return {growLesion, lesionStats, scores, category, cacDrs, grade};
})();
