// Just enough of CUDA to run cuda/selective_scan.cu on the CPU: one std::thread per CUDA thread,
// blocks one after another, __syncthreads as a block barrier, warp shuffles through a shared
// array between two warp barriers (every shuffle in the kernel is executed by all 32 lanes).
// For the emulation test only (tests/cuda_emulated.rs); it checks the kernel's indexing,
// tiling, carry and synchronisation, not its speed.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <math.h>
#include <thread>
#include <vector>

struct EmuDim3 {
    unsigned x = 0, y = 0, z = 0;
};
thread_local EmuDim3 threadIdx, blockIdx;

struct float4 {
    float x, y, z, w;
};

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static

constexpr int EMU_MAX_THREADS = 1024;
static std::barrier<>* emu_block_barrier = nullptr;
static std::vector<std::barrier<>*> emu_warp_barriers;
static float emu_shuffle[EMU_MAX_THREADS];
static std::vector<float> emu_dynamic_shared;

#define SMDIM_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(emu_dynamic_shared.data())

inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }

template <class T>
inline T __ldg(const T* p) {
    return *p;
}

// A GPU faults on a misaligned vector load; the CPU would not notice, so check it here.
inline float4 __ldg(const float4* p) {
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) {
        std::fprintf(stderr, "misaligned float4 load at %p\n", static_cast<const void*>(p));
        std::abort();
    }
    return *p;
}

inline float __shfl_up_sync(unsigned, float value, int offset) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    emu_shuffle[tid] = value;
    emu_warp_barriers[warp]->arrive_and_wait();
    const float result = lane >= offset ? emu_shuffle[tid - offset] : value;
    emu_warp_barriers[warp]->arrive_and_wait();
    return result;
}

// Runs `kernel(args...)` over grid (gx, gy) of `threads`-thread blocks with `shared_floats` of
// dynamic shared memory.
template <class Kernel, class... Args>
void emu_launch(Kernel kernel, unsigned gx, unsigned gy, int threads, size_t shared_floats,
                Args... args) {
    for (unsigned by = 0; by < gy; ++by) {
        for (unsigned bx = 0; bx < gx; ++bx) {
            std::barrier<> block(threads);
            std::vector<std::barrier<>*> warps;
            for (int w = 0; w < threads / 32; ++w) warps.push_back(new std::barrier<>(32));
            emu_block_barrier = &block;
            emu_warp_barriers = warps;
            // Garbage, like real shared memory: the kernel must initialise what it reads.
            emu_dynamic_shared.assign(shared_floats, NAN);
            std::vector<std::thread> pool;
            for (int t = 0; t < threads; ++t) {
                pool.emplace_back([=] {
                    threadIdx.x = t;
                    blockIdx.x = bx;
                    blockIdx.y = by;
                    kernel(args...);
                });
            }
            for (auto& th : pool) th.join();
            for (auto* w : warps) delete w;
        }
    }
}
