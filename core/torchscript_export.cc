#include "core/torchscript_export.h"

#include <functional>
#include <sstream>

#include <torch/script.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"

namespace vsdm::core {
namespace {

std::string Lin(const std::string& name, const std::string& in) {
  return absl::StrCat("torch.linear(", in, ", self.", name, "_weight, self.", name, "_bias)");
}

// TorchScript source of the network body, mirroring ScoreNetImpl exactly.
std::string NetSource(ScoreNet& net) {
  if (net->unet()) {
    const UNetOptions& u = net->options().unet;
    return absl::StrCat(
        "def time_features(self, t: Tensor) -> Tensor:\n"
        "    return self.unet_time_embedding(t.reshape(-1))\n\n"
        "def net(self, x: Tensor, tf: Tensor) -> Tensor:\n"
        "    b = x.size(0)\n"
        "    return self.unet_forward(x.reshape([b, ",
        u.channels, ", ", u.height, ", ", u.width, "]), tf).reshape([b, -1])\n\n",
        net->unet()->TorchScriptSource("unet_"));
  }
  const bool forecast = net->arch() == "forecast";
  const bool resnet = net->arch() == "toy_resnet" || forecast;
  std::string s;
  s += "def time_features(self, t: Tensor) -> Tensor:\n";
  s += "    arg = (t.reshape(-1, 1) * self.time_scale) * self.freqs\n";
  s += "    emb = torch.cat([torch.cos(arg), torch.sin(arg)], 1)\n";
  if (resnet) {
    s += "    return " + Lin("t_out", "torch.silu(" + Lin("t_in", "emb") + ")") + "\n";
  } else {
    s += "    return torch.matmul(emb, self.t_in_weight.t())\n";
  }
  s += "\n";
  s += "def net(self, x: Tensor, tf: Tensor) -> Tensor:\n";
  if (forecast) {
    const ForecastNetOptions& f = net->options().forecast;
    const int64_t hd = f.horizon * f.series, cd = f.context * f.series;
    s += absl::StrCat("    b = x.size(0)\n    c = x[:, ", hd, ":", hd + cd, "].reshape([b, ", f.context, ", ", f.series,
                      "]).transpose(1, 2)\n");
    s += "    c = torch.silu(torch.conv1d(c, self.enc0_weight, self.enc0_bias, 1, 1, 1))\n";
    s += "    c = c + torch.silu(torch.conv1d(c, self.enc1_weight, self.enc1_bias, 1, 2, 2))\n";
    s += "    c = c + torch.silu(torch.conv1d(c, self.enc2_weight, self.enc2_bias, 1, 4, 4))\n";
    s += absl::StrCat("    feats = torch.cat([c[:, :, -1], c.mean(2), x[:, ", hd + cd - f.series, ":", hd + cd,
                      "]], 1)\n");
    if (f.covariates > 0) s += absl::StrCat("    feats = torch.cat([feats, x[:, ", hd + cd, ":]], 1)\n");
    s += absl::StrCat("    h = ", Lin("x_in", absl::StrCat("x[:, :", hd, "]")), " + ", Lin("enc_out", "feats"),
                      " + tf\n");
  }
  if (resnet) {
    if (!forecast) s += "    h = " + Lin("x_in", "x") + "\n";
    for (int b = 0; b < 3; ++b) {
      s += "    r = h\n";
      for (int j = 0; j < 3; ++j) s += "    r = torch.silu(" + Lin(absl::StrCat("block", 3 * b + j), "r") + ")\n";
      s += "    h = (h + r) * 0.7071067811865476\n";
    }
    s += "    return " + Lin("head2", "torch.silu(" + Lin("head1", "h + tf") + ")") + "\n";
  } else {
    s += "    h = torch.silu(" + Lin("x_in", "x") + " + tf)\n";
    s += "    h = torch.silu(" + Lin("block0", "h") + ")\n";
    s += "    h = torch.silu(" + Lin("block1", "h") + ")\n";
    s += "    return " + Lin("head2", "h") + "\n";
  }
  return s;
}

constexpr const char* kInterpSource = R"TS(
def _grid_interp(self, table: Tensor, t: Tensor) -> Tensor:
    # Linear interpolation of a per-grid-time table [N+1, ...] at times t [B].
    u = ((t - self.t_min) / self.grid_step).clamp(0.0, float(self.steps))
    k0 = torch.floor(u).long().clamp(0, self.steps - 1)
    w = (u - k0.to(u.dtype)).reshape([-1] + [1] * (table.dim() - 1))
    return table[k0] * (1.0 - w) + table[k0 + 1] * w
)TS";

constexpr const char* kCommonSource = R"TS(
def beta(self, t: Tensor) -> Tensor:
    return self.beta_min + torch.pow(t, self.beta_r) * (self.beta_max - self.beta_min)

def forward(self, x: Tensor, t: Tensor) -> Tensor:
    """Score s(x, t) of the learned backward process. x: [B, d]; t: [B] or [1], in [t_min, 1]."""
    t = t.reshape(-1).expand(x.size(0)).to(x.dtype)
    xin = x * self._grid_interp(self.input_scale, t)
    out = self.net(xin, self.time_features(t))
    if self.parameterization == "policy":
        return out / torch.sqrt(self.beta(t)).unsqueeze(1) + torch.matmul(x, self.A.t())
    linv_t = self._grid_interp(self.chol_inv_t, t)
    return -torch.bmm(linv_t, out.unsqueeze(2)).squeeze(2)

def ode_drift(self, x: Tensor, t: float) -> Tensor:
    tt = torch.full([x.size(0)], t, dtype=x.dtype)
    b = self.beta(tt).unsqueeze(1)
    return 0.5 * b * (torch.matmul(x, self.D.t()) + self.forward(x, tt))

def sample(self, n: int, steps: int = 100) -> Tensor:
    """n samples by the Heun probability-flow ODE from N(0, Sigma_T) to t_min."""
    return self._heun(torch.matmul(torch.randn([n, self.dim]), self.prior_chol.t()), steps)
)TS";

// The Heun probability-flow ODE from T to t_min (spec §4) over the module's ode_drift.
constexpr const char* kHeunSource = R"TS(
def _heun(self, x: Tensor, steps: int) -> Tensor:
    h = (1.0 - self.t_min) / steps
    for i in range(steps):
        t0 = 1.0 - i * h
        f0 = self.ode_drift(x, t0).detach()
        xe = x + h * f0
        x = (x + 0.5 * h * (f0 + self.ode_drift(xe, t0 - h))).detach()
    return x
)TS";

constexpr const char* kMomentumSource = R"TS(
def forward(self, z: Tensor, t: Tensor) -> Tensor:
    """Velocity score s_v(z, t) of the learned backward process. z = (x, v): [B, 2d]; t: [B] or [1]."""
    t = t.reshape(-1).expand(z.size(0)).to(z.dtype)
    zin = z * self._grid_interp(self.input_scale, t)
    out = self.net(zin, self.time_features(t))
    return -out / self._grid_interp(self.chol_vv, t)

def ode_drift(self, z: Tensor, t: float) -> Tensor:
    tt = torch.full([z.size(0)], t, dtype=z.dtype)
    x = z[:, :self.dim]
    v = z[:, self.dim:]
    s = self.forward(z, tt)
    hb = 0.5 * self.beta_const
    fv = hb * (-x - self.gamma * v + self.gamma * (2.0 * (self.a * x + self.c * v) - s))
    return torch.cat([hb * v, fv], 1)

def sample(self, n: int, steps: int = 100) -> Tensor:
    """n samples (x only) by the Heun probability-flow ODE from N(0, Sigma_T) to t_min."""
    eps = torch.randn([n, self.dim, 2])
    zz = torch.matmul(self.prior_chol.unsqueeze(0), eps.unsqueeze(3)).squeeze(3)
    z = torch.cat([zz[:, :, 0], zz[:, :, 1]], 1)
    h = (1.0 - self.t_min) / steps
    for i in range(steps):
        t0 = 1.0 - i * h
        f0 = self.ode_drift(z, t0).detach()
        ze = z - h * f0
        z = (z - 0.5 * h * (f0 + self.ode_drift(ze, t0 - h))).detach()
    return z[:, :self.dim]
)TS";

constexpr const char* kDiagonalSource = R"TS(
def beta(self, t: Tensor) -> Tensor:
    return self.beta_min + torch.pow(t, self.beta_r) * (self.beta_max - self.beta_min)

def score_flat(self, x: Tensor, t: Tensor) -> Tensor:
    t = t.reshape(-1).expand(x.size(0)).to(x.dtype)
    out = self.net(x * self._grid_interp(self.input_scale, t), self.time_features(t))
    if self.parameterization == "policy":
        return out / torch.sqrt(self.beta(t)).unsqueeze(1) + x * self.a
    return -out * self._grid_interp(self.inv_std, t)

def forward(self, x: Tensor, t: Tensor) -> Tensor:
    """Score s(x, t) of the learned backward process. x: [B, ...] with d values per row; t: [B] or [1]."""
    return self.score_flat(x.reshape(x.size(0), -1), t).reshape(x.shape)

def ode_drift(self, x: Tensor, t: float) -> Tensor:
    tt = torch.full([x.size(0)], t, dtype=x.dtype)
    b = self.beta(tt).unsqueeze(1)
    return 0.5 * b * (x * self.d + self.score_flat(x, tt))

def sample(self, n: int, steps: int = 100) -> Tensor:
    """n samples by the Heun probability-flow ODE from N(0, diag(sigma_T^2)) to t_min; images in [0, 1]."""
    x = self._heun(torch.randn([n, self.dim]) * self.prior_std, steps)
    if self.channels > 0:
        return ((x.reshape([n, self.channels, self.height, self.width]) + 1.0) * 0.5).clamp(0.0, 1.0)
    return x
)TS";

// The parameters of `net` and the attributes every export has.
void RegisterNet(torch::jit::Module& m, ScoreNet& net, const TimeGrid& grid, int64_t dim, const std::string& method) {
  for (const auto& p : net->named_parameters()) {
    std::string name = absl::StrReplaceAll(p.key(), {{".", "_"}});
    m.register_parameter(name, p.value().detach().clone(), /*is_buffer=*/false);
  }
  for (const auto& b : net->named_buffers()) {
    if (b.key() == "freqs") continue;  // registered below
    m.register_buffer(absl::StrReplaceAll(b.key(), {{".", "_"}}), b.value().detach().clone());
  }
  m.register_buffer("freqs", ScoreNetImpl::EmbeddingFrequencies());
  m.register_attribute("t_min", c10::FloatType::get(), grid.t_min);
  m.register_attribute("grid_step", c10::FloatType::get(), grid.Step());
  m.register_attribute("steps", c10::IntType::get(), grid.steps);
  m.register_attribute("dim", c10::IntType::get(), dim);
  m.register_attribute("time_scale", c10::FloatType::get(), kTimeEmbeddingScale);
  m.register_attribute("method", c10::StringType::get(), method);
  m.register_attribute("arch", c10::StringType::get(), net->arch());
}

// The schedule and parameterisation every VSDM export carries.
void RegisterSchedule(torch::jit::Module& m, const BetaSchedule& schedule, Parameterization param) {
  m.register_attribute("beta_min", c10::FloatType::get(), schedule.beta_min);
  m.register_attribute("beta_max", c10::FloatType::get(), schedule.beta_max);
  m.register_attribute("beta_r", c10::FloatType::get(), schedule.r);
  m.register_attribute("parameterization", c10::StringType::get(),
                       std::string(param == Parameterization::kPolicy ? "policy" : "eps"));
}

// The dense kernel table's buffers: A, D, the prior's Cholesky factor, the input scale, L^{-T}.
void RegisterDenseTable(torch::jit::Module& m, const KernelTable& table) {
  m.register_buffer("A", table.A.clone());
  m.register_buffer("D", table.D.clone());
  m.register_buffer("prior_chol", table.prior_chol.clone());
  m.register_buffer("input_scale", table.input_scale.clone());
  m.register_buffer("chol_inv_t", table.chol_inv_t.clone());
}

// Builds the module `name` with `net`'s weights and attributes, `fill`'s buffers and attributes
// and `source` (TorchScript after NetSource(net)), and saves it to `path` atomically. INTERNAL on
// a TorchScript error (compilation or serialisation) or a failed write.
absl::Status SaveModule(const std::string& name, const std::string& path, ScoreNet& net, const TimeGrid& grid,
                        int64_t dim, const std::string& method, const std::function<void(torch::jit::Module&)>& fill,
                        const std::string& source) {
  try {
    torch::jit::Module m(name);
    RegisterNet(m, net, grid, dim, method);
    fill(m);
    m.define(NetSource(net) + kInterpSource + source);
    std::ostringstream out;
    m.save(out);
    return AtomicWriteFile(path, out.str());
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("torchscript export: ", e.what()));
  }
}

}  // namespace

absl::Status ExportTorchScript(const std::string& path, ScoreNet& net, const KernelTable& table,
                               const ExportInfo& info) {
  return SaveModule(
      "VsdmScoreModel", path, net, table.grid, table.dim(), info.method,
      [&](torch::jit::Module& m) {
        RegisterDenseTable(m, table);
        RegisterSchedule(m, info.schedule, info.param);
      },
      std::string(kHeunSource) + kCommonSource);
}

absl::Status ExportDiagonalTorchScript(const std::string& path, ScoreNet& net, const DiagonalKernelTable& table,
                                       const DiagonalExportInfo& info) {
  return SaveModule(
      "VsdmDiagonalScoreModel", path, net, table.grid, table.dim(), info.method,
      [&](torch::jit::Module& m) {
        m.register_buffer("a", table.a.to(torch::kFloat32).clone());
        m.register_buffer("d", table.dvec.to(torch::kFloat32).clone());
        m.register_buffer("prior_std", table.prior_std.to(torch::kFloat32).clone());
        m.register_buffer("input_scale", table.input_scale.to(torch::kFloat32).clone());
        m.register_buffer("inv_std", table.inv_std.to(torch::kFloat32).clone());
        RegisterSchedule(m, info.schedule, info.param);
        m.register_attribute("channels", c10::IntType::get(), info.channels);
        m.register_attribute("height", c10::IntType::get(), info.height);
        m.register_attribute("width", c10::IntType::get(), info.width);
      },
      std::string(kHeunSource) + kDiagonalSource);
}

constexpr const char* kForecastSource = R"TS(
def beta(self, t: Tensor) -> Tensor:
    return self.beta_min + torch.pow(t, self.beta_r) * (self.beta_max - self.beta_min)

def forward(self, x: Tensor, cond: Tensor, t: Tensor) -> Tensor:
    """Score of the standardised horizon block x [B, H*D] given cond [B, C*D + F]; t: [B] or [1]."""
    b = x.size(0)
    t = t.reshape(-1).expand(b).to(x.dtype)
    xr = x.reshape([b, self.horizon, self.series])
    xin = (xr * self._grid_interp(self.input_scale, t).unsqueeze(1)).reshape([b, -1])
    out = self.net(torch.cat([xin, cond], 1), self.time_features(t)).reshape([b, self.horizon, self.series])
    if self.parameterization == "policy":
        s = out / torch.sqrt(self.beta(t)).reshape([b, 1, 1]) + torch.matmul(xr, self.A.t())
        return s.reshape([b, -1])
    linv_t = self._grid_interp(self.chol_inv_t, t)
    return (-torch.bmm(out, linv_t.transpose(1, 2))).reshape([b, -1])

def ode_drift(self, x: Tensor, cond: Tensor, t: float) -> Tensor:
    b = x.size(0)
    tt = torch.full([b], t, dtype=x.dtype)
    bt = self.beta(tt).reshape([b, 1, 1])
    xr = x.reshape([b, self.horizon, self.series])
    s = self.forward(x, cond, tt).reshape([b, self.horizon, self.series])
    return (0.5 * bt * (torch.matmul(xr, self.D.t()) + s)).reshape([b, -1])

def forecast(self, context: Tensor, covariates: Tensor, samples: int = 100, steps: int = 100) -> Tensor:
    """Sample paths [n, samples, H, D] in original units, given raw contexts [n, C, D] (original
    units) and covariates [n, F] (sin, cos of the origin's day of year; [n, 0] when the data has none)."""
    n = context.size(0)
    z = context.float()
    z = torch.where(self.log1p > 0.5, torch.log1p(z.clamp_min(0.0)), z)
    z = (z - self.value_mean) / self.value_std
    cond = torch.cat([z.reshape([n, -1]), covariates.float().reshape([n, -1])], 1)
    cond = cond.repeat_interleave(samples, 0)
    m = n * samples
    x = torch.matmul(torch.randn([m * self.horizon, self.series]), self.prior_chol.t()).reshape([m, -1])
    ctx = cond[:, : self.context * self.series].reshape([m, self.context, self.series])
    feat = torch.cat([ctx[:, -1], ctx.mean(1), cond[:, self.context * self.series :], torch.ones([m, 1])], 1)
    x = x + torch.matmul(feat, self.prior_shift)
    h = (1.0 - self.t_min) / steps
    for i in range(steps):
        t0 = 1.0 - i * h
        f0 = self.ode_drift(x, cond, t0).detach()
        xe = x + h * f0
        x = (x + 0.5 * h * (f0 + self.ode_drift(xe, cond, t0 - h))).detach()
    y = x.reshape([n, samples, self.horizon, self.series]) * self.value_std + self.value_mean
    return torch.where(self.log1p > 0.5, torch.expm1(y).clamp_min(0.0), y)
)TS";

absl::Status ExportForecastTorchScript(const std::string& path, ScoreNet& net, const KernelTable& table,
                                       const ForecastExportInfo& info) {
  const int64_t d = info.series;
  auto vec = [d](const torch::Tensor& v, double fill) {
    return v.defined() ? v.to(torch::kFloat32).reshape({d}).clone() : torch::full({d}, fill, torch::kFloat32);
  };
  return SaveModule(
      "VsdmForecastModel", path, net, table.grid, table.dim(), info.method,
      [&](torch::jit::Module& m) {
        RegisterDenseTable(m, table);
        m.register_buffer("value_mean", vec(info.value_mean, 0.0));
        m.register_buffer("value_std", vec(info.value_std, 1.0));
        m.register_buffer("log1p", vec(info.log1p, 0.0));
        const int64_t k = 2 * d + info.covariates + 1, hd = info.horizon * d;
        m.register_buffer("prior_shift", info.prior_shift.defined()
                                             ? info.prior_shift.to(torch::kFloat32).reshape({k, hd}).clone()
                                             : torch::zeros({k, hd}, torch::kFloat32));
        RegisterSchedule(m, info.schedule, info.param);
        m.register_attribute("horizon", c10::IntType::get(), info.horizon);
        m.register_attribute("context", c10::IntType::get(), info.context);
        m.register_attribute("series", c10::IntType::get(), info.series);
        m.register_attribute("covariates", c10::IntType::get(), info.covariates);
      },
      kForecastSource);
}

absl::Status ExportMomentumTorchScript(const std::string& path, ScoreNet& net, const MomentumTable& table,
                                       const std::string& method) {
  return SaveModule(
      "VsmdScoreModel", path, net, table.grid, table.dim(), method,
      [&](torch::jit::Module& m) {
        m.register_buffer("a", table.a.clone());
        m.register_buffer("c", table.c.clone());
        m.register_buffer("prior_chol", table.prior_chol.clone());
        m.register_buffer("input_scale", table.input_scale.clone());
        m.register_buffer("chol_vv", table.chol.select(2, 1).select(2, 1).contiguous());
        m.register_attribute("beta_const", c10::FloatType::get(), table.options.beta);
        m.register_attribute("gamma", c10::FloatType::get(), table.options.gamma);
        m.register_attribute("damping", c10::FloatType::get(), table.options.damping);
      },
      kMomentumSource);
}

}  // namespace vsdm::core
