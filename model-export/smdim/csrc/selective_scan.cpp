// Native CPU selective scan (forward + backward) for training on a few cores.
// Semantics: model-export/SCAN_OP.md. Layout here: x, delta [B, D, L]; A [D, N];
// Bt, Ct [B, L, N] (already transposed so the inner loop over N is contiguous); Dp [D].
#include <torch/extension.h>
#include <ATen/Parallel.h>
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

// Returns dx, ddelta, dA, dBt, dCt, dD. States are recomputed per (b, d) row.
std::vector<torch::Tensor> scan_bwd(torch::Tensor x, torch::Tensor delta, torch::Tensor A,
                                    torch::Tensor Bt, torch::Tensor Ct, torch::Tensor Dp,
                                    torch::Tensor gy) {
  const int64_t Bsz = x.size(0), D = x.size(1), L = x.size(2), N = A.size(1);
  auto dx = torch::empty_like(x), ddelta = torch::empty_like(delta);
  auto dA_rows = torch::zeros({Bsz, D, N}, x.options());
  auto dB_rows = torch::zeros({Bsz, D, L, N}, x.options());
  auto dC_rows = torch::zeros({Bsz, D, L, N}, x.options());
  auto dD_rows = torch::zeros({Bsz, D}, x.options());
  const float *xp = x.data_ptr<float>(), *dp = delta.data_ptr<float>(), *Ap = A.data_ptr<float>();
  const float *Bp = Bt.data_ptr<float>(), *Cp = Ct.data_ptr<float>(), *Dpp = Dp.data_ptr<float>();
  const float *gp = gy.data_ptr<float>();
  float *dxp = dx.data_ptr<float>(), *ddp = ddelta.data_ptr<float>();
  float *dAp = dA_rows.data_ptr<float>(), *dBp = dB_rows.data_ptr<float>();
  float *dCp = dC_rows.data_ptr<float>(), *dDp = dD_rows.data_ptr<float>();
  at::parallel_for(0, Bsz * D, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> hs((L + 1) * N), dh(N);
    for (int64_t bd = begin; bd < end; ++bd) {
      const int64_t b = bd / D, d = bd % D;
      const float *xr = xp + bd * L, *dr = dp + bd * L, *gr = gp + bd * L, *a = Ap + d * N;
      const float *Bb = Bp + b * L * N, *Cb = Cp + b * L * N;
      std::fill(hs.begin(), hs.begin() + N, 0.f);
      for (int64_t t = 0; t < L; ++t) {
        const float dt = dr[t], dx_ = dt * xr[t];
        const float *Bv = Bb + t * N, *hp = &hs[t * N];
        float *hn = &hs[(t + 1) * N];
        for (int64_t n = 0; n < N; ++n) hn[n] = std::exp(dt * a[n]) * hp[n] + dx_ * Bv[n];
      }
      std::fill(dh.begin(), dh.end(), 0.f);
      float dDacc = 0.f;
      float *dAr = dAp + bd * N, *dBr = dBp + bd * L * N, *dCr = dCp + bd * L * N;
      for (int64_t t = L - 1; t >= 0; --t) {
        const float g = gr[t], dt = dr[t], xt = xr[t];
        const float *Bv = Bb + t * N, *Cv = Cb + t * N, *hp = &hs[t * N], *hn = &hs[(t + 1) * N];
        float ddt = 0.f, dxt = g * Dpp[d];
        dDacc += g * xt;
        for (int64_t n = 0; n < N; ++n) {
          dCr[t * N + n] = g * hn[n];
          const float dhn = dh[n] + g * Cv[n];
          const float at = std::exp(dt * a[n]);
          ddt += dhn * (a[n] * at * hp[n] + Bv[n] * xt);
          dBr[t * N + n] = dhn * dt * xt;
          dxt += dhn * dt * Bv[n];
          dAr[n] += dhn * dt * at * hp[n];
          dh[n] = dhn * at;
        }
        dxp[bd * L + t] = dxt;
        ddp[bd * L + t] = ddt;
      }
      dDp[bd] = dDacc;
    }
  });
  return {dx, ddelta, dA_rows.sum(0), dB_rows.sum(1), dC_rows.sum(1), dD_rows.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &scan_fwd, "selective scan forward");
  m.def("bwd", &scan_bwd, "selective scan backward");
}
