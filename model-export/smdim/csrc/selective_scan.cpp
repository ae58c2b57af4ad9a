// Native CPU selective scan (forward + backward) for training on a few cores.
// Semantics: model-export/SCAN_OP.md. Layout here: x, delta [B, D, L]; A [D, N];
// Bt, Ct [B, L, N] (already transposed so the inner loop over N is contiguous); Dp [D].
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

torch::Tensor scan_fwd(torch::Tensor x, torch::Tensor delta, torch::Tensor A, torch::Tensor Bt,
                       torch::Tensor Ct, torch::Tensor Dp) {
  const int64_t Bsz = x.size(0), D = x.size(1), L = x.size(2), N = A.size(1);
  auto y = torch::empty_like(x);
  const float *xp = x.data_ptr<float>(), *dp = delta.data_ptr<float>(), *Ap = A.data_ptr<float>();
  const float *Bp = Bt.data_ptr<float>(), *Cp = Ct.data_ptr<float>(), *Dpp = Dp.data_ptr<float>();
  float *yp = y.data_ptr<float>();
  at::parallel_for(0, Bsz * D, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> h(N);
    for (int64_t bd = begin; bd < end; ++bd) {
      const int64_t b = bd / D, d = bd % D;
      const float *xr = xp + bd * L, *dr = dp + bd * L, *a = Ap + d * N;
      const float *Bb = Bp + b * L * N, *Cb = Cp + b * L * N;
      float *yr = yp + bd * L;
      std::fill(h.begin(), h.end(), 0.f);
      for (int64_t t = 0; t < L; ++t) {
        const float dt = dr[t], xt = xr[t], dx = dt * xt;
        const float *Bv = Bb + t * N, *Cv = Cb + t * N;
        float acc = 0.f;
        for (int64_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * a[n]) * h[n] + dx * Bv[n];
          acc += Cv[n] * h[n];
        }
        yr[t] = acc + Dpp[d] * xt;
      }
    }
  });
  return y;
}

// Returns dx, ddelta, dA, dBt, dCt, dD. States are recomputed per (b, d) row. dB and dC are
// sums over channels: the work is split into (batch, channel group) tasks, each accumulating
// into its own [L, N] slice, so no [B, D, L, N] buffer exists. With at least as many batch rows
// as threads there is one group and the slices are the outputs themselves.
std::vector<torch::Tensor> scan_bwd(torch::Tensor x, torch::Tensor delta, torch::Tensor A,
                                    torch::Tensor Bt, torch::Tensor Ct, torch::Tensor Dp,
                                    torch::Tensor gy) {
  const int64_t Bsz = x.size(0), D = x.size(1), L = x.size(2), N = A.size(1);
  const int64_t threads = at::get_num_threads();
  const int64_t G = std::min<int64_t>(D, std::max<int64_t>(1, (threads + Bsz - 1) / Bsz));
  auto dx = torch::empty_like(x), ddelta = torch::empty_like(delta);
  auto dA_g = torch::zeros({Bsz * G, D, N}, x.options());  // row r = b * G + g
  auto dB_g = torch::zeros({Bsz, G, L, N}, x.options());
  auto dC_g = torch::zeros({Bsz, G, L, N}, x.options());
  auto dD_g = torch::zeros({Bsz * G, D}, x.options());
  const float *xp = x.data_ptr<float>(), *dp = delta.data_ptr<float>(), *Ap = A.data_ptr<float>();
  const float *Bp = Bt.data_ptr<float>(), *Cp = Ct.data_ptr<float>(), *Dpp = Dp.data_ptr<float>();
  const float *gp = gy.data_ptr<float>();
  float *dxp = dx.data_ptr<float>(), *ddp = ddelta.data_ptr<float>();
  float *dAp = dA_g.data_ptr<float>(), *dBp = dB_g.data_ptr<float>();
  float *dCp = dC_g.data_ptr<float>(), *dDp = dD_g.data_ptr<float>();
  const int64_t per = (D + G - 1) / G;
  at::parallel_for(0, Bsz * G, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> hs((L + 1) * N), dh(N);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / G, g = task % G;
      const float *Bb = Bp + b * L * N, *Cb = Cp + b * L * N;
      float *dBr = dBp + task * L * N, *dCr = dCp + task * L * N;
      for (int64_t d = g * per; d < std::min(D, (g + 1) * per); ++d) {
        const int64_t bd = b * D + d;
        const float *xr = xp + bd * L, *dr = dp + bd * L, *gr = gp + bd * L, *a = Ap + d * N;
        std::fill(hs.begin(), hs.begin() + N, 0.f);
        for (int64_t t = 0; t < L; ++t) {
          const float dt = dr[t], dx_ = dt * xr[t];
          const float *Bv = Bb + t * N, *hp = &hs[t * N];
          float *hn = &hs[(t + 1) * N];
          for (int64_t n = 0; n < N; ++n) hn[n] = std::exp(dt * a[n]) * hp[n] + dx_ * Bv[n];
        }
        std::fill(dh.begin(), dh.end(), 0.f);
        float dDacc = 0.f;
        float *dAr = dAp + (task * D + d) * N;
        for (int64_t t = L - 1; t >= 0; --t) {
          const float gt = gr[t], dt = dr[t], xt = xr[t];
          const float *Bv = Bb + t * N, *Cv = Cb + t * N, *hp = &hs[t * N], *hn = &hs[(t + 1) * N];
          float ddt = 0.f, dxt = gt * Dpp[d];
          dDacc += gt * xt;
          for (int64_t n = 0; n < N; ++n) {
            dCr[t * N + n] += gt * hn[n];
            const float dhn = dh[n] + gt * Cv[n];
            const float at = std::exp(dt * a[n]);
            ddt += dhn * (a[n] * at * hp[n] + Bv[n] * xt);
            dBr[t * N + n] += dhn * dt * xt;
            dxt += dhn * dt * Bv[n];
            dAr[n] += dhn * dt * at * hp[n];
            dh[n] = dhn * at;
          }
          dxp[bd * L + t] = dxt;
          ddp[bd * L + t] = ddt;
        }
        dDp[task * D + d] = dDacc;
      }
    }
  });
  auto dB = G == 1 ? dB_g.squeeze(1) : dB_g.sum(1);
  auto dC = G == 1 ? dC_g.squeeze(1) : dC_g.sum(1);
  return {dx, ddelta, dA_g.sum(0), dB, dC, dD_g.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &scan_fwd, "selective scan forward");
  m.def("bwd", &scan_bwd, "selective scan backward");
}
