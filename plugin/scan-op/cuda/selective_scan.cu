// smdim::SelectiveScan on the GPU: the CUDA twin of the CPU kernel in ../src/kernel.rs.
//
// Semantics (model-export/smdim/scan.py, selective_scan_ref), float32, row-major:
//   x, delta: [B, Dc, L]   A: [Dc, N]   B, C: [B, N, L]   D: [Dc]   ->   y: [B, Dc, L]
//   h[t] = exp(delta[t] * A) * h[t-1] + delta[t] * B[t] * x[t],   y[t] = C[t] . h[t] + D * x[t]
//
// Parallel over the sequence: for one state n, step t is the affine map h -> a_t * h + b_t, and
// composing affine maps is associative, so the recurrence is a scan. One thread block owns one
// (batch, channel) row and walks the sequence in tiles of THREADS * ITEMS steps. Per tile and
// state, each thread folds its ITEMS consecutive steps into one map (sequential, O(ITEMS)), the
// block scans those THREADS maps (warp shuffles, then the few warp totals), and each thread
// replays its steps from the state entering its chunk, accumulating C[t] * h[t] into y. The
// state at the end of a tile carries into the next one. Total work O(L * N) like the sequential
// scan (work-efficient); depth O(ITEMS + log THREADS) per tile.
//
// Built by `cargo xtask build-ops` (nvcc from PyPI) into a fatbin (sm_80, sm_86, sm_89, sm_90 and
// compute_90 PTX for newer GPUs) that the Rust operator embeds and loads with the CUDA driver.

// The CPU emulation test (tests/cuda_emulated.rs) compiles this file as C++ with its own
// definition of this macro; nvcc uses dynamic shared memory.
#ifndef SMDIM_DYNAMIC_SHARED
#define SMDIM_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#define SMDIM_THREADS 128
#define SMDIM_ITEMS 8
#define SMDIM_TILE (SMDIM_THREADS * SMDIM_ITEMS)
#define SMDIM_WARPS (SMDIM_THREADS / 32)
#define SMDIM_FULL_MASK 0xffffffffu

// h -> a * h + b
struct Affine {
    float a;
    float b;
};

// `first`, then `then`.
__device__ __forceinline__ Affine compose(Affine first, Affine then) {
    Affine r;
    r.a = first.a * then.a;
    r.b = fmaf(then.a, first.b, then.b);
    return r;
}

// Loads ITEMS consecutive floats starting at `t0` (< len or not); steps past the end read 0.
// `aligned`: the row start and `len` are multiples of 4 floats, so float4 loads are legal.
__device__ __forceinline__ void load_items(const float* __restrict__ row, int t0, int len,
                                           bool aligned, float out[SMDIM_ITEMS]) {
    if (aligned && t0 + SMDIM_ITEMS <= len) {
        const float4* p = reinterpret_cast<const float4*>(row + t0);
#pragma unroll
        for (int k = 0; k < SMDIM_ITEMS / 4; ++k) {
            float4 v = __ldg(p + k);
            out[4 * k + 0] = v.x;
            out[4 * k + 1] = v.y;
            out[4 * k + 2] = v.z;
            out[4 * k + 3] = v.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < SMDIM_ITEMS; ++k) {
            int t = t0 + k;
            out[k] = t < len ? __ldg(row + t) : 0.0f;
        }
    }
}

// Grid: (channels, batch). Block: SMDIM_THREADS. Dynamic shared memory: state floats.
extern "C" __global__ void __launch_bounds__(SMDIM_THREADS)
    smdim_selective_scan_fwd(const float* __restrict__ x, const float* __restrict__ delta,
                             const float* __restrict__ A, const float* __restrict__ B,
                             const float* __restrict__ C, const float* __restrict__ D,
                             float* __restrict__ y, int channels, int state, int len) {
    // carry[n]: the state h[n] at the end of the previous tile.
    SMDIM_DYNAMIC_SHARED(float, carry);
    __shared__ Affine warp_total[SMDIM_WARPS];

    const int channel = blockIdx.x;
    const int batch = blockIdx.y;
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;

    const size_t row = ((size_t)batch * channels + channel) * (size_t)len;
    const float* __restrict__ x_row = x + row;
    const float* __restrict__ delta_row = delta + row;
    float* __restrict__ y_row = y + row;
    const float* __restrict__ B_batch = B + (size_t)batch * state * len;
    const float* __restrict__ C_batch = C + (size_t)batch * state * len;
    const float* __restrict__ A_row = A + (size_t)channel * state;
    const float skip = D[channel];
    // ONNX Runtime's allocations are 256-byte aligned; rows stay 16-byte aligned when len % 4 == 0.
    const bool aligned = (len & 3) == 0;

    for (int n = tid; n < state; n += SMDIM_THREADS) {
        carry[n] = 0.0f;
    }
    __syncthreads();

    for (int tile = 0; tile < len; tile += SMDIM_TILE) {
        const int t0 = tile + tid * SMDIM_ITEMS;
        float xs[SMDIM_ITEMS], dts[SMDIM_ITEMS], acc[SMDIM_ITEMS];
        load_items(x_row, t0, len, aligned, xs);
        load_items(delta_row, t0, len, aligned, dts);
#pragma unroll
        for (int k = 0; k < SMDIM_ITEMS; ++k) {
            acc[k] = skip * xs[k];
        }

        for (int n = 0; n < state; ++n) {
            const float a_n = __ldg(A_row + n);
            float bs[SMDIM_ITEMS], cs[SMDIM_ITEMS];
            load_items(B_batch + (size_t)n * len, t0, len, aligned, bs);
            load_items(C_batch + (size_t)n * len, t0, len, aligned, cs);

            // This thread's steps as maps; steps past the end are the identity (a = 1, b = 0).
            float da[SMDIM_ITEMS], dbx[SMDIM_ITEMS];
            Affine local = {1.0f, 0.0f};
#pragma unroll
            for (int k = 0; k < SMDIM_ITEMS; ++k) {
                const bool valid = t0 + k < len;
                da[k] = valid ? expf(dts[k] * a_n) : 1.0f;
                dbx[k] = valid ? dts[k] * bs[k] * xs[k] : 0.0f;
                Affine step = {da[k], dbx[k]};
                local = compose(local, step);
            }

            // Inclusive scan of the threads' maps within the warp (Hillis-Steele on 32 lanes).
            Affine inclusive = local;
#pragma unroll
            for (int offset = 1; offset < 32; offset <<= 1) {
                Affine earlier;
                earlier.a = __shfl_up_sync(SMDIM_FULL_MASK, inclusive.a, offset);
                earlier.b = __shfl_up_sync(SMDIM_FULL_MASK, inclusive.b, offset);
                if (lane >= offset) {
                    inclusive = compose(earlier, inclusive);
                }
            }
            if (lane == 31) {
                warp_total[warp] = inclusive;
            }
            Affine exclusive;
            exclusive.a = __shfl_up_sync(SMDIM_FULL_MASK, inclusive.a, 1);
            exclusive.b = __shfl_up_sync(SMDIM_FULL_MASK, inclusive.b, 1);
            if (lane == 0) {
                exclusive.a = 1.0f;
                exclusive.b = 0.0f;
            }
            __syncthreads();  // warp_total complete

            // Everything before this thread: the earlier warps, then the earlier lanes.
            Affine before = {1.0f, 0.0f};
            for (int w = 0; w < warp; ++w) {
                before = compose(before, warp_total[w]);
            }
            before = compose(before, exclusive);

            float h = fmaf(before.a, carry[n], before.b);
#pragma unroll
            for (int k = 0; k < SMDIM_ITEMS; ++k) {
                h = fmaf(da[k], h, dbx[k]);
                acc[k] = fmaf(cs[k], h, acc[k]);
            }
            __syncthreads();  // every thread has read carry[n] and warp_total
            if (tid == SMDIM_THREADS - 1) {
                // The last thread's chunk ends the tile (padding steps are identities).
                carry[n] = h;
            }
        }

#pragma unroll
        for (int k = 0; k < SMDIM_ITEMS; ++k) {
            const int t = t0 + k;
            if (t < len) {
                y_row[t] = acc[k];
            }
        }
        __syncthreads();  // carry writes visible before the next tile reads them
    }
}
