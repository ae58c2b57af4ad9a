// Reads a scan problem from argv[1] (raw little-endian: 4 x int32 B D N L, then x, delta, A, B,
// C, D as float32), runs cuda/selective_scan.cu under the CPU emulation, writes y to argv[2].
#include "cuda_emulation.hpp"
#include "../../cuda/selective_scan.cu"

#include <cstdio>
#include <cstdint>

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = std::fopen(argv[1], "rb");
    if (!in) return 3;
    int32_t dims[4];
    if (std::fread(dims, 4, 4, in) != 4) return 4;
    const size_t b = dims[0], d = dims[1], n = dims[2], l = dims[3];
    auto read = [&](size_t count) {
        std::vector<float> v(count);
        if (std::fread(v.data(), 4, count, in) != count) std::exit(5);
        return v;
    };
    auto x = read(b * d * l), delta = read(b * d * l), A = read(d * n), B = read(b * n * l),
         C = read(b * n * l), D = read(d);
    std::fclose(in);
    std::vector<float> y(b * d * l, NAN);
    emu_launch(smdim_selective_scan_fwd, (unsigned)d, (unsigned)b, SMDIM_THREADS, n, x.data(),
               delta.data(), A.data(), B.data(), C.data(), D.data(), y.data(), (int)d, (int)n,
               (int)l);
    FILE* out = std::fopen(argv[2], "wb");
    if (!out) return 6;
    std::fwrite(y.data(), 4, y.size(), out);
    std::fclose(out);
    return 0;
}
