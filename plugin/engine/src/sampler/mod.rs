//! Absorbing-state diffusion sampling, the Rust twin of `model-export/smdim/diffusion.py`.
//!
//! Two unmasking orders (docs/model/SAMPLER.md), both starting from MASK with known tokens fixed:
//! - [`Order::Random`]: for t = steps..1, every still-masked position, in ascending order, draws
//!   one uniform and is unmasked when it is below 1/t; if any is, the denoiser runs once and each
//!   unmasked position, in ascending order, draws one uniform and picks its token with [`choose`].
//! - [`Order::Confidence`] (MaskGIT-style): every step the denoiser runs once, every masked
//!   position draws a candidate (and a noise uniform), and the [`committed_after`] most
//!   confident candidates are kept; the rest stay masked, so early guesses are revisited.
//!
//! Random numbers come from [`SplitMix64`], seeded with the user's seed, so the same settings,
//! seed and logits give the same tokens in Python and Rust. MASK, BOS, EOS and PAD are never
//! emitted.
//!
//! Both orders can pull pitch choices toward the key of the pitches the phrase already holds
//! ([`SamplerSettings::tonal_focus`]), so a long phrase keeps one key instead of mixing the keys
//! of tokens drawn in parallel; its arithmetic is the Python `tonal_bonus` and
//! `tonal_focus_row`, term for term.
//!
//! On top of the reference, [`constraints`] masks logits at every choice so the result is
//! grammatical by construction (exact bar count, positions that never go backwards, pitch range,
//! key, notes per onset). With constraints off the choices equal the Python sampler's.

pub mod constraints;
pub mod edit;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::vocab::{TokenId, Vocabulary};
use constraints::{Constraints, Sweep};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Counter-based SplitMix64, as in the Python sampler.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// numpy's `np.sum` on a contiguous float64 vector: the first element, plus the pairwise sum of
/// the rest (8 accumulators per block of up to 128). Reproduced so probabilities match the
/// Python reference to the last bit.
fn numpy_sum(values: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            a.iter().fold(0.0, |acc, v| acc + v)
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let whole = n - n % 8;
            let mut i = 8;
            while i < whole {
                for j in 0..8 {
                    r[j] += a[i + j];
                }
                i += 8;
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for v in &a[whole..] {
                res += v;
            }
            res
        } else {
            let mut half = n / 2;
            half -= half % 8;
            pairwise(&a[..half]) + pairwise(&a[half..])
        }
    }
    match values.split_first() {
        None => 0.0,
        Some((first, rest)) => first + pairwise(rest),
    }
}

/// Reusable buffers for [`choose`], so a generation allocates once.
#[derive(Debug, Default, Clone)]
pub struct ChooseScratch {
    probs: Vec<f64>,
    order: Vec<u32>,
    sorted: Vec<f64>,
}

/// One categorical draw from `logits` (banned entries already `-inf`), exactly as the Python
/// `choose`: temperature ≤ 0 → first maximum; else softmax in f64, nucleus of the smallest
/// prefix (by probability descending, id ascending) with mass ≥ `top_p`, inverse-CDF with `u`.
pub fn choose(
    logits: &[f64],
    u: f64,
    temperature: f64,
    top_p: f64,
    scratch: &mut ChooseScratch,
) -> usize {
    if logits.is_empty() {
        return 0;
    }
    // Temperature <= 0 is greedy, as in the reference; NaN is greedy too (safe, not NaN probabilities).
    if temperature.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best;
    }
    let probs = &mut scratch.probs;
    probs.clear();
    probs.extend(logits.iter().map(|&z| z / temperature));
    let max = probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        // Everything banned or non-finite: fall back to the first maximum of the raw logits.
        return choose(logits, u, 0.0, top_p, scratch);
    }
    for p in probs.iter_mut() {
        *p = (*p - max).exp();
    }
    let total = numpy_sum(probs);
    for p in probs.iter_mut() {
        *p /= total;
    }
    let order = &mut scratch.order;
    order.clear();
    order.extend(0..probs.len() as u32);
    order.sort_unstable_by(|&a, &b| {
        probs[b as usize]
            .total_cmp(&probs[a as usize])
            .then(a.cmp(&b))
    });

    let mut cumulative = 0.0;
    let mut k = order.len();
    for (i, &id) in order.iter().enumerate() {
        cumulative += probs[id as usize];
        if cumulative >= top_p {
            k = i + 1;
            break;
        }
    }
    let k = k.clamp(1, order.len());
    let sorted = &mut scratch.sorted;
    sorted.clear();
    sorted.extend(order[..k].iter().map(|&id| probs[id as usize]));
    let mass = numpy_sum(sorted);
    let mut cdf = 0.0;
    let mut pick = k - 1;
    for (j, p) in sorted.iter().enumerate() {
        cdf += p / mass;
        if cdf > u {
            pick = j;
            break;
        }
    }
    // A zero-probability pick can only happen at the last ulp of the CDF; never emit a banned
    // token for it.
    while pick > 0 && sorted[pick] == 0.0 {
        pick -= 1;
    }
    order[pick] as usize
}

/// What the sampler needs from a denoiser: logits `[length, vocab]` for one sequence.
pub trait Denoise {
    type Error;
    fn logits(&mut self, tokens: &[TokenId], out: &mut Vec<f32>) -> Result<(), Self::Error>;
}

impl<E, F: FnMut(&[TokenId], &mut Vec<f32>) -> Result<(), E>> Denoise for F {
    type Error = E;
    fn logits(&mut self, tokens: &[TokenId], out: &mut Vec<f32>) -> Result<(), E> {
        self(tokens, out)
    }
}

/// Which masked positions a step unmasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Each position independently with probability 1/t (the SCHmUBERT reference).
    #[default]
    Random,
    /// The positions whose sampled token the model is surest of.
    Confidence,
}

impl Order {
    pub const ALL: [Order; 2] = [Order::Random, Order::Confidence];

    /// Stable id (CLI, saved state, Python's `order=`).
    pub fn id(self) -> &'static str {
        match self {
            Order::Random => "random",
            Order::Confidence => "confidence",
        }
    }

    pub fn parse(text: &str) -> Option<Order> {
        Order::ALL.into_iter().find(|o| o.id() == text.trim())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    pub steps: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub order: Order,
    /// Scale of the annealed Gumbel noise on confidences ([`Order::Confidence`] only).
    pub noise: f64,
    /// Weight λ of the pull toward the key of the pitches already decided (fixed ones
    /// included): at each step every pitch logit gains λ·ln(12 P[c]) for its class c, P the
    /// pitch-class distribution that key posterior predicts (flat before any pitch), then the
    /// pitch logits shift together so pitches keep the model's total probability against
    /// other tokens. 0 is the plain model.
    pub tonal_focus: f64,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        SamplerSettings {
            steps: 32,
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
            order: Order::Random,
            noise: 0.0,
            tonal_focus: 0.0,
        }
    }
}

/// The key profiles [`crate::theory::Key::estimate`] uses, major then minor.
const KEY_PROFILES: [&[f64; 12]; 2] =
    [&crate::theory::MAJOR_PROFILE, &crate::theory::MINOR_PROFILE];

/// The pull of [`SamplerSettings::tonal_focus`] for one step.
struct TonalFocus {
    weight: f64,
    /// Pitch class of every vocabulary id; `None` for tokens that are not pitches.
    classes: Vec<Option<u8>>,
    bonus: [f64; 12],
}

impl TonalFocus {
    fn new(vocab: &Vocabulary, weight: f64) -> TonalFocus {
        let classes = vocab
            .tokens()
            .iter()
            .map(|t| match t {
                crate::vocab::Token::Pitch(p) => Some(p % 12),
                _ => None,
            })
            .collect();
        TonalFocus {
            weight: if weight.is_finite() {
                weight.max(0.0)
            } else {
                0.0
            },
            classes,
            bonus: [0.0; 12],
        }
    }

    /// This step's per-class bonus from the pitches decided in `x`: the key posterior of
    /// their pitch classes under the Krumhansl-Kessler profiles (24 keys, flat prior), its
    /// predictive pitch-class distribution P, and λ·ln(12 P[c]).
    fn update(&mut self, x: &[TokenId]) {
        if self.weight == 0.0 {
            return;
        }
        let mut counts = [0u32; 12];
        for &t in x {
            if let Some(Some(c)) = self.classes.get(t as usize) {
                counts[*c as usize] += 1;
            }
        }
        self.bonus = [0.0; 12];
        if counts.iter().all(|&n| n == 0) {
            return;
        }
        let share =
            |profile: &[f64; 12], degree: usize| profile[degree] / profile.iter().sum::<f64>();
        let mut scores = [0.0f64; 24];
        for (k, score) in scores.iter_mut().enumerate() {
            let (tonic, profile) = (k / 2, KEY_PROFILES[k % 2]);
            for (c, &n) in counts.iter().enumerate() {
                *score += n as f64 * share(profile, (c + 12 - tonic) % 12).ln();
            }
        }
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut total, mut predictive) = (0.0f64, [0.0f64; 12]);
        for (k, &score) in scores.iter().enumerate() {
            let (tonic, profile) = (k / 2, KEY_PROFILES[k % 2]);
            let w = (score - max).exp();
            total += w;
            for (c, p) in predictive.iter_mut().enumerate() {
                *p += w * share(profile, (c + 12 - tonic) % 12);
            }
        }
        for (bonus, p) in self.bonus.iter_mut().zip(predictive) {
            *bonus = self.weight * (12.0 * (p / total)).ln();
        }
    }

    /// Adds the bonus to the allowed pitch logits of `row`, shifted so their total probability
    /// is unchanged (a slot that may hold a pitch or another token keeps the model's odds).
    fn apply(&self, row: &mut [f64]) {
        if self.weight == 0.0 {
            return;
        }
        let pitches = || {
            row.iter()
                .zip(&self.classes)
                .filter_map(|(&z, &c)| c.filter(|_| z > f64::NEG_INFINITY).map(|c| (z, c)))
        };
        let max = pitches().map(|(z, _)| z).fold(f64::NEG_INFINITY, f64::max);
        if !max.is_finite() {
            return;
        }
        let (mut before, mut after) = (0.0f64, 0.0f64);
        for (z, c) in pitches() {
            before += (z - max).exp();
            after += (z + self.bonus[c as usize] - max).exp();
        }
        let shift = after.ln() - before.ln();
        for (z, c) in row.iter_mut().zip(&self.classes) {
            if let Some(c) = c {
                if *z > f64::NEG_INFINITY {
                    *z = *z + self.bonus[*c as usize] - shift;
                }
            }
        }
    }
}

/// Positions unmasked after step `step_index` (0-based) of `steps` in confidence order:
/// ceil(n0 (s+1)^2 / S^2) in integers, so few commitments early and most late.
pub fn committed_after(n0: usize, step_index: u32, steps: u32) -> usize {
    let sq = steps as u128 * steps as u128;
    let s1 = step_index as u128 + 1;
    ((n0 as u128 * s1 * s1).div_ceil(sq)) as usize
}

/// Probability of `idx` under softmax(logits / temperature) (temperature ≤ 0 counts as 1),
/// computed as [`choose`] computes its probabilities (Python: `softmax_prob`).
pub fn softmax_prob(logits: &[f64], idx: usize, temperature: f64, scratch: &mut Vec<f64>) -> f64 {
    let tau = if temperature > 0.0 { temperature } else { 1.0 };
    scratch.clear();
    scratch.extend(logits.iter().map(|&z| z / tau));
    let max = scratch.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return 0.0;
    }
    for p in scratch.iter_mut() {
        *p = (*p - max).exp();
    }
    scratch[idx] / numpy_sum(scratch)
}

/// log p plus Gumbel noise annealed to zero over the run (Python: `confidence_score`).
pub fn confidence_score(p: f64, u_noise: f64, noise: f64, t: u32, steps: u32) -> f64 {
    let u = if u_noise > 0.0 {
        u_noise
    } else {
        (2.0f64).powi(-53)
    };
    let gumbel = -(-u.ln()).ln();
    p.ln() + noise * (t as f64 / steps as f64) * gumbel
}

/// Why sampling stopped early.
#[derive(Debug)]
pub enum SampleError<E> {
    Cancelled,
    Denoiser(E),
    /// The denoiser returned a buffer of the wrong size.
    BadLogits {
        expected: usize,
        got: usize,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for SampleError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SampleError::Cancelled => write!(f, "generation cancelled"),
            SampleError::Denoiser(e) => write!(f, "denoiser failed: {e}"),
            SampleError::BadLogits { expected, got } => {
                write!(f, "denoiser returned {got} logits, expected {expected}")
            }
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for SampleError<E> {}

/// Statistics of one run, for logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleStats {
    pub denoiser_calls: u32,
    /// Choices where the constraints allowed nothing and only the static ban applied (should
    /// stay 0; non-zero means fixed tokens contradicted the grammar).
    pub relaxed_choices: u32,
}

/// Per-run buffers and the logit masking shared by both orders.
/// What a token is to the same-onset pitch check.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pitch,
    /// `Position` or `Bar`: an onset's edge.
    Edge,
    Other,
}

/// Slots scanned either way for pitches of the same onset (12 notes of pitch and duration).
const ONSET_REACH: usize = 2 * constraints::MAX_NOTES_PER_ONSET_LIMIT as usize + 2;

struct Picker {
    static_ban: Vec<bool>,
    kinds: Vec<Kind>,
    row: Vec<f64>,
    allowed: Vec<bool>,
    scratch: ChooseScratch,
    probs: Vec<f64>,
    temperature: f64,
    top_p: f64,
    tonal: TonalFocus,
    /// Choices where the constraints allowed nothing ([`SampleStats::relaxed_choices`]).
    relaxed_choices: u32,
}

impl Picker {
    /// Masks the logits of slot `i` (static bans, then the constraints) into `self.row` and
    /// draws a token with `u`. Counts choices where the constraints allowed nothing. `context`
    /// is `x` with this step's earlier choices in it.
    fn pick(
        &mut self,
        source: &[f32],
        sweep: Option<&mut Sweep<'_>>,
        x: &[TokenId],
        context: &[TokenId],
        i: usize,
        u: f64,
    ) -> usize {
        let mut constrained = false;
        if let Some(sweep) = sweep {
            constrained = sweep.allowed(x, i, &mut self.allowed);
            if constrained {
                self.ban_onset_pitches(context, i);
            }
        }
        let any_allowed = !constrained
            || self
                .allowed
                .iter()
                .zip(&self.static_ban)
                .any(|(a, b)| *a && !b);
        if constrained && !any_allowed {
            self.relaxed_choices += 1;
        }
        for (v, (dst, &src)) in self.row.iter_mut().zip(source).enumerate() {
            let banned = self.static_ban[v] || (constrained && any_allowed && !self.allowed[v]);
            *dst = if banned {
                f64::NEG_INFINITY
            } else {
                src as f64
            };
        }
        self.tonal.apply(&mut self.row);
        choose(
            &self.row,
            u,
            self.temperature,
            self.top_p,
            &mut self.scratch,
        )
    }

    /// A pitch already sounding at this slot's onset is not allowed again (the decoder would
    /// merge the two into one note, losing an onset a kept rhythm asked for). Local and never
    /// blocking: an onset holds at most 12 of the 88+ pitches.
    fn ban_onset_pitches(&mut self, tokens: &[TokenId], i: usize) {
        let kinds = &self.kinds;
        let kind = |t: TokenId| kinds.get(t as usize).copied().unwrap_or(Kind::Other);
        let allowed = &mut self.allowed;
        let mut banned = [TokenId::MAX; 2 * ONSET_REACH];
        let mut n = 0;
        let mut scan = |side: &mut dyn Iterator<Item = &TokenId>| {
            for &t in side {
                match kind(t) {
                    Kind::Edge => break,
                    Kind::Pitch => {
                        if let Some(slot) = allowed.get_mut(t as usize).filter(|s| **s) {
                            *slot = false;
                            banned[n] = t;
                            n += 1;
                        }
                    }
                    Kind::Other => {}
                }
            }
        };
        scan(&mut tokens[..i].iter().rev().take(ONSET_REACH));
        scan(&mut tokens[i + 1..].iter().take(ONSET_REACH));
        // Never at the cost of the grammar: with no other pitch left (a one-pitch range), the
        // repeat stays allowed.
        let any_left = self
            .allowed
            .iter()
            .zip(&self.static_ban)
            .any(|(a, b)| *a && !b);
        if !any_left {
            for &t in &banned[..n] {
                self.allowed[t as usize] = true;
            }
        }
    }
}

/// Runs the reverse process. `initial` holds fixed tokens and MASK where free. `progress`
/// gets (step done, steps) after every step; `cancel` is checked before every step.
pub fn sample<D: Denoise>(
    vocab: &Vocabulary,
    denoiser: &mut D,
    initial: &[TokenId],
    settings: &SamplerSettings,
    constraints: Option<&Constraints>,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u32, u32),
) -> Result<(Vec<TokenId>, SampleStats), SampleError<D::Error>> {
    let mask = vocab.mask_id();
    let vocab_len = vocab.len();
    let mut x = initial.to_vec();
    let mut static_ban = vec![false; vocab_len];
    // As the reference (docs/model/SAMPLER.md): never MASK, BOS, EOS or PAD.
    for text in ["MASK_None", "BOS_None", "EOS_None", "PAD_None"] {
        if let Some(id) = vocab.id_of(text) {
            static_ban[id as usize] = true;
        }
    }
    let kinds = vocab
        .tokens()
        .iter()
        .map(|t| match t {
            crate::vocab::Token::Pitch(_) => Kind::Pitch,
            crate::vocab::Token::Position(_) | crate::vocab::Token::Bar => Kind::Edge,
            _ => Kind::Other,
        })
        .collect();
    let mut picker = Picker {
        static_ban,
        kinds,
        row: vec![0f64; vocab_len],
        allowed: vec![true; vocab_len],
        scratch: ChooseScratch::default(),
        probs: Vec::with_capacity(vocab_len),
        temperature: settings.temperature,
        top_p: settings.top_p,
        tonal: TonalFocus::new(vocab, settings.tonal_focus),
        relaxed_choices: 0,
    };
    let mut rng = SplitMix64::new(settings.seed);
    let mut logits = Vec::with_capacity(x.len() * vocab_len);
    let mut newly = Vec::with_capacity(x.len());
    let mut candidates: Vec<(f64, usize, TokenId)> = Vec::with_capacity(x.len());
    // Confidence order: `x` with this step's candidates so far.
    let mut drawn: Vec<TokenId> = Vec::with_capacity(x.len());
    let mut stats = SampleStats::default();
    let steps = settings.steps.max(1);
    let n0 = x.iter().filter(|&&t| t == mask).count();

    for s in 0..steps {
        let t = steps - s;
        if cancel.load(Ordering::Relaxed) {
            return Err(SampleError::Cancelled);
        }
        let masked = x.iter().filter(|&&t| t == mask).count();
        newly.clear();
        let keep = match settings.order {
            Order::Random => {
                let threshold = 1.0 / t as f64;
                for (i, &token) in x.iter().enumerate() {
                    if token == mask && rng.uniform() < threshold {
                        newly.push(i);
                    }
                }
                newly.len()
            }
            Order::Confidence => {
                let done = n0 - masked;
                committed_after(n0, s, steps)
                    .saturating_sub(done)
                    .min(masked)
            }
        };
        if keep > 0 {
            logits.clear();
            denoiser
                .logits(&x, &mut logits)
                .map_err(SampleError::Denoiser)?;
            stats.denoiser_calls += 1;
            if logits.len() != x.len() * vocab_len {
                return Err(SampleError::BadLogits {
                    expected: x.len() * vocab_len,
                    got: logits.len(),
                });
            }
            picker.tonal.update(&x);
            let mut sweep = constraints.map(|c| c.sweep(vocab, &x));
            match settings.order {
                Order::Random => {
                    for &i in &newly {
                        let u = rng.uniform();
                        let source = &logits[i * vocab_len..(i + 1) * vocab_len];
                        let token = picker.pick(source, sweep.as_mut(), &x, &x, i, u);
                        x[i] = token as TokenId;
                        if let Some(sweep) = sweep.as_mut() {
                            sweep.advance(&x, i, x[i]);
                        }
                    }
                }
                Order::Confidence => {
                    candidates.clear();
                    drawn.clear();
                    drawn.extend_from_slice(&x);
                    for i in 0..x.len() {
                        if x[i] != mask {
                            continue;
                        }
                        let (u_token, u_noise) = (rng.uniform(), rng.uniform());
                        let source = &logits[i * vocab_len..(i + 1) * vocab_len];
                        let token = picker.pick(source, sweep.as_mut(), &x, &drawn, i, u_token);
                        drawn[i] = token as TokenId;
                        let p = softmax_prob(
                            &picker.row,
                            token,
                            settings.temperature,
                            &mut picker.probs,
                        );
                        let score = confidence_score(p, u_noise, settings.noise, t, steps);
                        candidates.push((score, i, token as TokenId));
                        // Later candidates are drawn as if this one were kept: every subset
                        // of a consistent assignment is consistent, so any selection is.
                        if let Some(sweep) = sweep.as_mut() {
                            sweep.advance(&x, i, token as TokenId);
                        }
                    }
                    candidates.sort_by(|a, b| {
                        b.0.partial_cmp(&a.0)
                            .unwrap_or(std::cmp::Ordering::Equal)
                            .then(a.1.cmp(&b.1))
                    });
                    for &(_, i, token) in &candidates[..keep] {
                        x[i] = token;
                    }
                }
            }
        }
        progress(s + 1, steps);
    }
    stats.relaxed_choices = picker.relaxed_choices;
    Ok((x, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pitch_id(vocab: &Vocabulary, pitch: u8) -> TokenId {
        vocab.id_of(&format!("Pitch_{pitch}")).unwrap()
    }

    fn pitch_share(row: &[f64], classes: &[Option<u8>]) -> f64 {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = row.iter().map(|z| (z - max).exp()).sum();
        let pitches: f64 = row
            .iter()
            .zip(classes)
            .filter(|(_, c)| c.is_some())
            .map(|(z, _)| (z - max).exp())
            .sum();
        pitches / total
    }

    #[test]
    fn tonal_focus_favours_the_key_in_use_and_keeps_the_pitch_share() {
        let vocab = Vocabulary::remi_v1();
        let mut focus = TonalFocus::new(vocab, 2.0);
        // C major triads, many times, and one MASK: the pull is toward C major.
        let mut x: Vec<TokenId> = [60, 64, 67, 72, 76]
            .iter()
            .cycle()
            .take(40)
            .map(|&p| pitch_id(vocab, p))
            .collect();
        x.push(vocab.mask_id());
        focus.update(&x);
        for in_key in [0, 4, 7] {
            for outside in [1, 3, 6, 8, 10] {
                assert!(
                    focus.bonus[in_key] > focus.bonus[outside],
                    "{:?}",
                    focus.bonus
                );
            }
        }
        let mut rng = SplitMix64::new(7);
        let model: Vec<f64> = (0..vocab.len()).map(|_| rng.uniform() * 4.0).collect();
        let mut row = model.clone();
        // Pitch 61 banned (a constraint): it stays banned.
        row[pitch_id(vocab, 61) as usize] = f64::NEG_INFINITY;
        let banned = row.clone();
        focus.apply(&mut row);
        assert_eq!(row[pitch_id(vocab, 61) as usize], f64::NEG_INFINITY);
        let share_before = pitch_share(&banned, &focus.classes);
        let share_after = pitch_share(&row, &focus.classes);
        assert!(
            (share_before - share_after).abs() < 1e-12,
            "{share_before} vs {share_after}"
        );
        // Other tokens keep their logits; in-key classes gain against the rest.
        let bar = vocab.bar_id() as usize;
        assert_eq!(row[bar], model[bar]);
        let gain = |p: u8| row[pitch_id(vocab, p) as usize] - model[pitch_id(vocab, p) as usize];
        assert!(gain(64) > gain(63) + 1.0, "{} vs {}", gain(64), gain(63));
        assert!(
            (gain(48) - gain(60)).abs() < 1e-12,
            "one bonus per pitch class"
        );
    }

    #[test]
    fn no_tonal_focus_without_weight_or_decided_pitches() {
        let vocab = Vocabulary::remi_v1();
        let mut rng = SplitMix64::new(3);
        let model: Vec<f64> = (0..vocab.len()).map(|_| rng.uniform()).collect();
        let mut off = TonalFocus::new(vocab, 0.0);
        off.update(&[pitch_id(vocab, 60); 8]);
        let mut row = model.clone();
        off.apply(&mut row);
        assert_eq!(row, model);
        // Nothing decided yet: every key is as likely, the bonus is 0 and no pitch moves.
        let mut empty = TonalFocus::new(vocab, 2.0);
        empty.update(&[vocab.mask_id(); 8]);
        let mut row = model.clone();
        empty.apply(&mut row);
        for (a, b) in row.iter().zip(&model) {
            assert!((a - b).abs() < 1e-12);
        }
        // A non-number weight reads as 0.
        assert_eq!(TonalFocus::new(vocab, f64::NAN).weight, 0.0);
    }

    #[test]
    fn splitmix_matches_the_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert!((0..1000)
            .map(|_| rng.uniform())
            .all(|u| (0.0..1.0).contains(&u)));
    }

    #[test]
    fn numpy_sum_orders_like_numpy() {
        let v: Vec<f64> = (0..300).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let plain: f64 = v.iter().sum();
        assert!((numpy_sum(&v) - plain).abs() < 1e-12);
        assert_eq!(numpy_sum(&[]), 0.0);
        assert_eq!(numpy_sum(&[2.5]), 2.5);
    }

    #[test]
    fn choose_respects_temperature_top_p_and_bans() {
        let mut scratch = ChooseScratch::default();
        let logits = [0.0, 5.0, f64::NEG_INFINITY, 4.9];
        assert_eq!(choose(&logits, 0.99, 0.0, 1.0, &mut scratch), 1);
        // top_p small → only the most likely.
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(choose(&logits, u, 1.0, 0.1, &mut scratch), 1);
        }
        // Never the banned id, whatever u.
        for i in 0..1000 {
            let u = i as f64 / 1000.0;
            assert_ne!(choose(&logits, u, 1.0, 1.0, &mut scratch), 2);
        }
        // u low → first in order (id 1), u high → last with mass (id 0).
        assert_eq!(choose(&logits, 0.0, 1.0, 1.0, &mut scratch), 1);
        assert_eq!(choose(&logits, 0.99999, 1.0, 1.0, &mut scratch), 0);
    }
}
