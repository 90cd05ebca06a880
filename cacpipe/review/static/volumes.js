/* Decoding the page's volumes (cacpipe/review/viewer_data.py writes them): base64 -> zlib
   (DecompressionStream, no library, no network) -> byte planes joined -> typed array, placed
   right after its NIfTI-1 header so that NiiVue can read the same buffer as a .nii file.
   A volume voxel (k, j, i) is scored-series voxel offset + step * (k, j, i) + (step - 1) / 2. */
'use strict';
const CacVolumes = (function () {
  function b64bytes(s) {
    const bin = atob(s);
    const n = bin.length;
    const u = new Uint8Array(n);
    for (let i = 0; i < n; i++) u[i] = bin.charCodeAt(i);
    return u;
  }
  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  const SIZE = {int16: 2, uint16: 2, uint8: 1};
  const HEADER = 352;

  class Vol {
    constructor(v, buffer) {
      this.name = v.name;
      this.dtype = v.dtype;
      this.dims = v.shape_zyx;            // [nz, ny, nx]
      this.offset = v.offset_zyx;
      this.step = v.step_zyx;
      this.slope = v.slope;
      this.inter = v.inter;
      this.nifti = buffer;                // header + samples
      this.affine = v.affine_ras;         // NIfTI voxel (i, j, k) -> RAS mm
      this.inverse = invert(v.affine_ras);
      const n = this.dims[0] * this.dims[1] * this.dims[2];
      this.data = v.dtype === 'int16' ? new Int16Array(buffer, HEADER, n)
        : v.dtype === 'uint16' ? new Uint16Array(buffer, HEADER, n) : new Uint8Array(buffer, HEADER, n);
    }
    index(k, j, i) { return (k * this.dims[1] + j) * this.dims[2] + i; }
    inside(k, j, i) {
      return k >= 0 && j >= 0 && i >= 0 && k < this.dims[0] && j < this.dims[1] && i < this.dims[2];
    }
    value(k, j, i) { return this.data[this.index(k, j, i)] * this.slope + this.inter; }
    // scored-series voxel (z, y, x) <-> this volume's voxel (k, j, i)
    toVol(zyx) { return zyx.map((v, a) => Math.floor((v - this.offset[a]) / this.step[a])); }
    toScan(kji) { return kji.map((v, a) => this.offset[a] + this.step[a] * v + Math.floor((this.step[a] - 1) / 2)); }
    // RAS mm (what NiiVue calls mm) <-> this volume's voxel [k, j, i]
    kjiToMm(kji) {
      const A = this.affine, v = [kji[2], kji[1], kji[0]];
      return [0, 1, 2].map((r) => A[r][0] * v[0] + A[r][1] * v[1] + A[r][2] * v[2] + A[r][3]);
    }
    mmToKji(mm) {
      const B = this.inverse;
      const v = [0, 1, 2].map((r) => B[r][0] * mm[0] + B[r][1] * mm[1] + B[r][2] * mm[2] + B[r][3]);
      return [Math.round(v[2]), Math.round(v[1]), Math.round(v[0])];
    }
    niftiCopy() { return this.nifti.slice(0); }
    withData(samples) {  // a new NIfTI buffer with this header and other samples of the same type
      const buf = this.nifti.slice(0);
      new Uint8Array(buf, HEADER).set(new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength));
      return buf;
    }
  }

  function invert(A) {  // inverse of a 4x4 affine [[R t], [0 1]]
    const [a, b, c] = A[0], [d, e, f] = A[1], [g, h, i] = A[2];
    const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    const R = [[(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
      [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
      [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det]];
    const t = [A[0][3], A[1][3], A[2][3]];
    return R.map((row) => [...row, -(row[0] * t[0] + row[1] * t[1] + row[2] * t[2])]);
  }

  async function decode(v) {
    const raw = await inflate(b64bytes(v.data));
    const size = SIZE[v.dtype];
    const n = raw.length / size;
    const buf = new ArrayBuffer(HEADER + raw.length);
    const all = new Uint8Array(buf);
    all.set(b64bytes(v.nifti_header), 0);
    if (size === 1) all.set(raw, HEADER);
    else for (let i = 0, o = HEADER; i < n; i++, o += 2) { all[o] = raw[i]; all[o + 1] = raw[n + i]; }
    return new Vol(v, buf);
  }

  async function decodeSet(set) {
    const out = {};
    for (const [name, v] of Object.entries(set)) out[name] = await decode(v);
    return out;
  }

  return {decode, decodeSet, Vol};
})();
