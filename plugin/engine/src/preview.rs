//! The preview voice: a small polyphonic FM electric piano that plays the notes SMDIM sends out,
//! so the plugin is audible on an instrument track without a synth after it.
//!
//! Real-time safe by construction: a fixed array of voices, no allocation, no locks; every
//! decaying value is flushed to zero below −100 dB (no denormals, voices free themselves).
//! Clicks are avoided with a short attack ramp, exponential releases and a fast fade for
//! stolen voices; a peak limiter with instant attack bounds the output at [`CEILING`].
//!
//! The caller feeds events in time order and renders the samples between them
//! ([`Preview::render`]), which makes the sound sample-accurate with the note events.

/// Notes that sound at once; a further note steals the oldest one (released ones first).
pub const MAX_VOICES: usize = 32;
/// Slots for stolen voices fading out while their replacements start.
const SPARE_SLOTS: usize = 8;
const SLOTS: usize = MAX_VOICES + SPARE_SLOTS;

/// The output never exceeds this (−0.5 dBFS) at any level, polyphony or velocity.
pub const CEILING: f32 = 0.944;
/// After a note-off, the voice is silent (freed) within this many seconds.
pub const RELEASE_TAIL_SECONDS: f64 = 0.45;

/// Attack ramp: long enough to avoid a click, short enough to keep the onset crisp.
const ATTACK_S: f32 = 0.0015;
/// Release time constant (a voice falls below [`END`] within 9.2 τ = 0.37 s).
const RELEASE_TAU_S: f32 = 0.04;
/// A stolen voice's fade.
const STEAL_TAU_S: f32 = 0.0015;
/// Amplitudes below this are zero (−100 dB): no denormals, and a voice ends.
const FLOOR: f32 = 1e-5;
/// A releasing voice ends below this share of its peak (−80 dB).
const END: f32 = 1e-4;
/// The sustained level an electric piano decays to (held chords stay audible).
const SUSTAIN: f32 = 0.2;
/// The per-voice gain at full velocity: a melody at the default level (−6 dB) plays around
/// −20 dBFS; dense loud chords at full level reach the limiter.
const VOICE_GAIN: f32 = 0.4;
/// Level smoothing (one pole).
const LEVEL_TAU_S: f32 = 0.02;
/// Limiter release.
const LIMITER_TAU_S: f32 = 0.15;

/// `sin(2π·phase)`, for any phase in [-2, 2): a parabola with one refinement step (max error
/// ≈ 0.001, harmonics below −60 dB), several times cheaper than `f32::sin`.
#[inline]
fn sin_cycles(phase: f32) -> f32 {
    let p = phase + 2.0;
    let mut x = p - (p as i32) as f32;
    if x >= 0.5 {
        x -= 1.0;
    }
    let y = 8.0 * x - 16.0 * x * x.abs();
    0.225 * (y * y.abs() - y) + y
}

#[inline]
fn flush(x: f32) -> f32 {
    if x.abs() < FLOOR {
        0.0
    } else {
        x
    }
}

/// Per-sample multiplier of an exponential decay with time constant `tau` seconds.
fn decay_coefficient(tau: f32, sample_rate: f32) -> f32 {
    (-1.0 / (tau * sample_rate)).exp()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Free,
    /// Key down.
    Held,
    /// Key up while the sustain pedal is down.
    Pedal,
    Released,
    /// Fading out fast: stolen, choked or all-sound-off.
    Stolen,
}

#[derive(Debug, Clone, Copy)]
struct Voice {
    stage: Stage,
    channel: u8,
    key: u8,
    /// Start order, for stealing the oldest.
    age: u64,
    carrier: f32,
    carrier_inc: f32,
    modulator: f32,
    modulator_inc: f32,
    bell: f32,
    bell_inc: f32,
    attack: f32,
    attack_inc: f32,
    /// The decaying part of the amplitude above [`SUSTAIN`].
    decay: f32,
    decay_coef: f32,
    /// The decaying part of the modulation index above its floor.
    index: f32,
    index_coef: f32,
    index_floor: f32,
    bell_amp: f32,
    bell_coef: f32,
    release: f32,
    release_coef: f32,
    gain_left: f32,
    gain_right: f32,
}

const FREE: Voice = Voice {
    stage: Stage::Free,
    channel: 0,
    key: 0,
    age: 0,
    carrier: 0.0,
    carrier_inc: 0.0,
    modulator: 0.0,
    modulator_inc: 0.0,
    bell: 0.0,
    bell_inc: 0.0,
    attack: 0.0,
    attack_inc: 0.0,
    decay: 0.0,
    decay_coef: 0.0,
    index: 0.0,
    index_coef: 0.0,
    index_floor: 0.0,
    bell_amp: 0.0,
    bell_coef: 0.0,
    release: 0.0,
    release_coef: 0.0,
    gain_left: 0.0,
    gain_right: 0.0,
};

impl Voice {
    fn sounding(&self) -> bool {
        matches!(self.stage, Stage::Held | Stage::Pedal)
    }

    fn start(&mut self, channel: u8, key: u8, velocity: f32, age: u64, sample_rate: f32) {
        let velocity = if velocity.is_finite() {
            velocity.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let frequency = 440.0 * ((key.min(127) as f32 - 69.0) / 12.0).exp2();
        let nyquist = 0.5 * sample_rate;
        // Higher notes decay faster, as on a real electric piano.
        let decay_tau = (1.6 * (-(key as f32 - 60.0) / 24.0).exp2()).clamp(0.25, 4.0);
        // Fewer sidebands high up, where they would alias.
        let brightness = (2000.0 / frequency).min(1.0);
        let pan = ((key as f32 - 60.0) / 48.0).clamp(-0.5, 0.5);
        let angle = (pan + 1.0) * std::f32::consts::FRAC_PI_4;
        let loudness = VOICE_GAIN * (0.2 + 0.8 * velocity * velocity);
        *self = Voice {
            stage: Stage::Held,
            channel,
            key,
            age,
            carrier: 0.0,
            carrier_inc: (frequency / sample_rate).fract(),
            modulator: 0.0,
            modulator_inc: (frequency / sample_rate).fract(),
            bell: 0.0,
            bell_inc: (4.0 * frequency / sample_rate).fract(),
            attack: 0.0,
            attack_inc: 1.0 / (ATTACK_S * sample_rate).max(1.0),
            decay: 1.0 - SUSTAIN,
            decay_coef: decay_coefficient(decay_tau, sample_rate),
            index: (0.6 + 1.8 * velocity) * brightness,
            index_coef: decay_coefficient(0.3, sample_rate),
            index_floor: 0.35 * brightness,
            bell_amp: if 4.0 * frequency < 0.45 * nyquist {
                0.25 * velocity
            } else {
                0.0
            },
            bell_coef: decay_coefficient(0.05, sample_rate),
            release: 1.0,
            release_coef: 1.0,
            gain_left: loudness * angle.cos(),
            gain_right: loudness * angle.sin(),
        };
    }

    fn release(&mut self, sample_rate: f32) {
        if self.sounding() {
            self.stage = Stage::Released;
            self.release_coef = decay_coefficient(RELEASE_TAU_S, sample_rate);
        }
    }

    fn fade(&mut self, sample_rate: f32) {
        if self.stage != Stage::Free {
            self.stage = Stage::Stolen;
            self.release_coef = decay_coefficient(STEAL_TAU_S, sample_rate);
        }
    }

    /// Adds this voice into the buffers.
    fn render(&mut self, left: &mut [f32], right: &mut [f32]) {
        const TWO_PI_INV: f32 = 1.0 / std::f32::consts::TAU;
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            self.attack = (self.attack + self.attack_inc).min(1.0);
            let amplitude = self.attack * (SUSTAIN + self.decay) * self.release;
            let index = self.index_floor + self.index;
            let m = sin_cycles(self.modulator);
            let c = sin_cycles(self.carrier + index * TWO_PI_INV * m);
            let b = self.bell_amp * sin_cycles(self.bell);
            let out = amplitude * (c + b);
            *l += out * self.gain_left;
            *r += out * self.gain_right;

            self.carrier += self.carrier_inc;
            self.carrier -= (self.carrier >= 1.0) as u32 as f32;
            self.modulator += self.modulator_inc;
            self.modulator -= (self.modulator >= 1.0) as u32 as f32;
            self.bell += self.bell_inc;
            self.bell -= (self.bell >= 1.0) as u32 as f32;
            self.decay *= self.decay_coef;
            self.index *= self.index_coef;
            self.bell_amp *= self.bell_coef;
            self.release *= self.release_coef;
            if self.release * (SUSTAIN + self.decay) < END {
                // Freed at once, not at the end of a long block: the tail is bounded.
                *self = FREE;
                return;
            }
        }
        // Once per call is enough: from 1 they take thousands of blocks to reach denormals.
        self.decay = flush(self.decay);
        self.index = flush(self.index);
        self.bell_amp = flush(self.bell_amp);
    }
}

/// The polyphonic preview voice. Feed it note events in time order and render between them.
#[derive(Debug, Clone)]
pub struct Preview {
    sample_rate: f32,
    voices: [Voice; SLOTS],
    /// Sustain pedal per MIDI channel.
    pedal: [bool; 16],
    enabled: bool,
    level: f32,
    gain: f32,
    level_coef: f32,
    limiter: f32,
    limiter_coef: f32,
    starts: u64,
}

impl Preview {
    pub fn new(sample_rate: f64) -> Preview {
        let mut preview = Preview {
            sample_rate: 48_000.0,
            voices: [FREE; SLOTS],
            pedal: [false; 16],
            enabled: true,
            level: 1.0,
            gain: 1.0,
            level_coef: 0.0,
            limiter: 0.0,
            limiter_coef: 0.0,
            starts: 0,
        };
        preview.set_sample_rate(sample_rate);
        preview
    }

    /// Silences everything and adopts a new rate (garbage rates fall back to 48 kHz).
    pub fn set_sample_rate(&mut self, sample_rate: f64) {
        let rate = if sample_rate.is_finite() && (1_000.0..=1_536_000.0).contains(&sample_rate) {
            sample_rate as f32
        } else {
            48_000.0
        };
        self.sample_rate = rate;
        self.level_coef = decay_coefficient(LEVEL_TAU_S, rate);
        self.limiter_coef = decay_coefficient(LIMITER_TAU_S, rate);
        self.reset();
    }

    /// Silence at once (activation, deactivation): nothing rings on afterwards.
    pub fn reset(&mut self) {
        self.voices = [FREE; SLOTS];
        self.pedal = [false; 16];
        self.limiter = 0.0;
        self.gain = self.level;
    }

    /// Off: sounding voices fade out fast and new notes are ignored.
    pub fn set_enabled(&mut self, enabled: bool) {
        if self.enabled && !enabled {
            self.sound_off(None);
        }
        self.enabled = enabled;
    }

    /// Output level as a linear gain (clamped to 0..=1), smoothed over ≈ 20 ms.
    pub fn set_level(&mut self, gain: f32) {
        self.level = if gain.is_finite() {
            gain.clamp(0.0, 1.0)
        } else {
            0.0
        };
    }

    /// Voices in use (sounding, releasing or fading).
    pub fn active_voices(&self) -> usize {
        self.voices
            .iter()
            .filter(|v| v.stage != Stage::Free)
            .count()
    }

    /// Voices whose key is down (or held by the pedal).
    pub fn sounding_voices(&self) -> usize {
        self.voices.iter().filter(|v| v.sounding()).count()
    }

    /// `velocity` in 0..=1 (CLAP's scale). A note-on for a key already down on that channel
    /// releases the old one first.
    pub fn note_on(&mut self, channel: u8, key: u8, velocity: f32) {
        if !self.enabled || key > 127 {
            return;
        }
        let channel = channel.min(15);
        self.note_off_now(channel, key, false);
        let in_use = self
            .voices
            .iter()
            .filter(|v| !matches!(v.stage, Stage::Free | Stage::Stolen))
            .count();
        if in_use >= MAX_VOICES {
            // Steal the oldest releasing voice, else the oldest held one.
            let victim = self
                .voices
                .iter()
                .enumerate()
                .filter(|(_, v)| !matches!(v.stage, Stage::Free | Stage::Stolen))
                .min_by_key(|(_, v)| (v.sounding(), v.age))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                self.voices[i].fade(self.sample_rate);
            }
        }
        let slot = match self.voices.iter().position(|v| v.stage == Stage::Free) {
            Some(slot) => slot,
            // Every spare is still fading (a burst of steals): reuse the quietest.
            None => self
                .voices
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.release.total_cmp(&b.1.release))
                .map(|(i, _)| i)
                .unwrap_or(0),
        };
        self.starts += 1;
        self.voices[slot].start(channel, key, velocity, self.starts, self.sample_rate);
    }

    pub fn note_off(&mut self, channel: u8, key: u8) {
        let pedal = self.pedal[channel.min(15) as usize];
        self.note_off_now(channel.min(15), key, pedal);
    }

    fn note_off_now(&mut self, channel: u8, key: u8, pedal: bool) {
        let rate = self.sample_rate;
        for voice in self
            .voices
            .iter_mut()
            .filter(|v| v.sounding() && v.channel == channel && v.key == key)
        {
            if pedal {
                voice.stage = Stage::Pedal;
            } else {
                voice.release(rate);
            }
        }
    }

    /// The sustain pedal (CC 64) of one channel; lifting it releases the notes it held.
    pub fn pedal(&mut self, channel: u8, down: bool) {
        let channel = channel.min(15);
        self.pedal[channel as usize] = down;
        if !down {
            let rate = self.sample_rate;
            for voice in self
                .voices
                .iter_mut()
                .filter(|v| v.stage == Stage::Pedal && v.channel == channel)
            {
                voice.release(rate);
            }
        }
    }

    /// All notes off (CC 123): releases every key of `channel` (all channels for `None`).
    pub fn notes_off(&mut self, channel: Option<u8>) {
        let rate = self.sample_rate;
        for voice in self
            .voices
            .iter_mut()
            .filter(|v| channel.is_none_or(|c| v.channel == c))
        {
            voice.release(rate);
        }
    }

    /// All sound off (CC 120), a choke or the voice switched off: a fast fade, no click.
    pub fn sound_off(&mut self, channel: Option<u8>) {
        let rate = self.sample_rate;
        for voice in self
            .voices
            .iter_mut()
            .filter(|v| channel.is_none_or(|c| v.channel == c))
        {
            voice.fade(rate);
        }
    }

    /// Writes the next `left.len()` samples (overwriting). Silence costs nothing: with no voice
    /// in use the buffers are zeroed and nothing else runs.
    pub fn render(&mut self, left: &mut [f32], right: &mut [f32]) {
        let len = left.len().min(right.len());
        let (left, right) = (&mut left[..len], &mut right[..len]);
        left.fill(0.0);
        right.fill(0.0);
        if self.voices.iter().all(|v| v.stage == Stage::Free) {
            self.limiter = 0.0;
            self.gain = self.level;
            return;
        }
        for voice in self.voices.iter_mut().filter(|v| v.stage != Stage::Free) {
            voice.render(left, right);
        }
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            self.gain = self.level + (self.gain - self.level) * self.level_coef;
            let (x, y) = (*l * self.gain, *r * self.gain);
            let peak = x.abs().max(y.abs());
            self.limiter = flush((self.limiter * self.limiter_coef).max(peak));
            let g = if self.limiter > CEILING {
                CEILING / self.limiter
            } else {
                1.0
            };
            // The clamp only catches the last rounding step of `x * g`.
            *l = (x * g).clamp(-CEILING, CEILING);
            *r = (y * g).clamp(-CEILING, CEILING);
        }
    }
}

/// Plays `phrase` offline (for a WAV file): its notes at the tempo map's times (ticks, quarter
/// notes per minute; 120 without one), then the release tail. Returns (left, right).
pub fn render_phrase(
    phrase: &crate::Phrase,
    tempo_map: &[(u64, f64)],
    sample_rate: f64,
    level: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut preview = Preview::new(sample_rate);
    preview.set_level(level);
    preview.reset();
    let rate = preview.sample_rate as f64;
    let sample_at = |tick: u64| -> usize {
        // Seconds at `tick` through the tempo map's segments.
        let mut seconds = 0.0;
        let (mut at, mut bpm) = (0u64, 120.0);
        for &(change, tempo) in tempo_map {
            if change > tick {
                break;
            }
            seconds += (change - at) as f64 / crate::PPQ as f64 * 60.0 / bpm;
            at = change;
            if tempo.is_finite() && tempo > 0.0 {
                bpm = tempo;
            }
        }
        seconds += (tick - at) as f64 / crate::PPQ as f64 * 60.0 / bpm;
        (seconds * rate).round() as usize
    };
    // (sample, is note-on, pitch, velocity); at equal samples note-offs first.
    let mut events: Vec<(usize, bool, u8, u8)> = phrase
        .notes
        .iter()
        .flat_map(|n| {
            let start = n.start as u64;
            [
                (sample_at(start), true, n.pitch, n.velocity),
                (sample_at(start + n.length as u64), false, n.pitch, 0),
            ]
        })
        .collect();
    events.sort_by_key(|&(at, on, _, _)| (at, on));
    let end = sample_at(phrase.length_ticks() as u64).max(events.last().map_or(0, |e| e.0))
        + (RELEASE_TAIL_SECONDS * rate).ceil() as usize;
    let (mut left, mut right) = (vec![0.0; end], vec![0.0; end]);
    let mut at = 0;
    for (sample, on, pitch, velocity) in events {
        preview.render(&mut left[at..sample], &mut right[at..sample]);
        at = sample;
        if on {
            preview.note_on(0, pitch, velocity as f32 / 127.0);
        } else {
            preview.note_off(0, pitch);
        }
    }
    preview.render(&mut left[at..], &mut right[at..]);
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    fn run(preview: &mut Preview, samples: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut l, mut r) = (vec![0.0; samples], vec![0.0; samples]);
        preview.render(&mut l, &mut r);
        (l, r)
    }

    #[test]
    fn the_fast_sine_is_close_to_sin() {
        for i in -4000..4000 {
            let phase = i as f32 / 2000.0;
            let want = (phase * std::f32::consts::TAU).sin();
            assert!((sin_cycles(phase) - want).abs() < 0.0011, "{phase}");
        }
    }

    #[test]
    fn silent_without_notes_and_after_the_release_tail() {
        for rate in [44_100.0, 48_000.0, 96_000.0] {
            let mut p = Preview::new(rate);
            let (l, r) = run(&mut p, 4096);
            assert!(l.iter().chain(&r).all(|&s| s == 0.0));

            p.note_on(0, 60, 0.8);
            let (l, r) = run(&mut p, (rate * 0.5) as usize);
            assert!(
                rms(&l) > 0.01 && rms(&r) > 0.01,
                "stereo, audible at {rate}"
            );
            // Held: still audible after 3 s (the sustain level).
            let (l, _) = run(&mut p, (rate * 3.0) as usize);
            assert!(rms(&l[l.len() - 4096..]) > 0.005, "sustains at {rate}");
            p.note_off(0, 60);
            let tail = (rate * RELEASE_TAIL_SECONDS) as usize;
            let (l, r) = run(&mut p, tail);
            assert!(l.iter().chain(&r).all(|s| s.is_finite()));
            assert_eq!(p.active_voices(), 0, "freed within the tail at {rate}");
            let (l, r) = run(&mut p, 4096);
            assert!(l.iter().chain(&r).all(|&s| s == 0.0), "exactly silent");
        }
    }

    /// Largest sample-to-sample step, a proxy for clicks.
    fn max_step(x: &[f32]) -> f32 {
        x.windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn no_clicks_at_note_on_note_off_and_steals() {
        let rate = 48_000.0;
        let mut p = Preview::new(rate);
        p.note_on(0, 45, 1.0);
        let (on, _) = run(&mut p, 2400);
        // The steady tone's own steepest step, after the attack.
        let steady = max_step(&on[1200..]);
        assert!(max_step(&on[..1200]) <= steady * 1.5, "attack ramp");
        p.note_off(0, 45);
        let (off, _) = run(&mut p, 2400);
        let joined = [&on[2390..], &off[..100]].concat();
        assert!(max_step(&joined) <= steady * 1.2, "release is smooth");

        // 33 notes: the 33rd steals; the stolen voice fades out instead of stopping.
        let mut p = Preview::new(rate);
        for key in 30..62 {
            p.note_on(0, key, 0.5);
        }
        let (before, _) = run(&mut p, 2400);
        let steady = max_step(&before[1200..]);
        p.note_on(0, 90, 0.0);
        let (after, _) = run(&mut p, 2400);
        assert!(max_step(&[&before[2390..], &after[..200]].concat()) <= steady * 1.5);
        assert_eq!(p.sounding_voices(), MAX_VOICES);
    }

    #[test]
    fn full_polyphony_never_exceeds_the_ceiling() {
        let mut p = Preview::new(44_100.0);
        p.set_level(1.0);
        let mut peak = 0.0f32;
        for round in 0..6 {
            for key in 24..108 {
                p.note_on(key % 3, key, 1.0);
            }
            let (l, r) = run(&mut p, 4410);
            for s in l.iter().chain(&r) {
                assert!(s.is_finite());
                peak = peak.max(s.abs());
            }
            assert!(p.active_voices() <= SLOTS, "round {round}");
        }
        assert!(peak <= CEILING, "{peak}");
        assert!(peak > 0.5, "the limiter bounds, it does not mute: {peak}");
    }

    #[test]
    fn pedal_holds_released_keys_until_lifted() {
        let mut p = Preview::new(48_000.0);
        p.pedal(0, true);
        p.note_on(0, 60, 0.7);
        p.note_off(0, 60);
        run(&mut p, 48_000);
        assert_eq!(p.sounding_voices(), 1, "the pedal holds it");
        p.pedal(1, false);
        assert_eq!(p.sounding_voices(), 1, "another channel's pedal");
        p.pedal(0, false);
        assert_eq!(p.sounding_voices(), 0);
        run(&mut p, 48_000);
        assert_eq!(p.active_voices(), 0);
    }

    #[test]
    fn off_fades_out_and_ignores_new_notes() {
        let mut p = Preview::new(48_000.0);
        p.note_on(3, 64, 0.9);
        run(&mut p, 1000);
        p.set_enabled(false);
        p.note_on(3, 67, 0.9);
        run(&mut p, 1000);
        assert_eq!(p.active_voices(), 0, "faded within 1,000 samples");
        let (l, r) = run(&mut p, 512);
        assert!(l.iter().chain(&r).all(|&s| s == 0.0));
        p.set_enabled(true);
        p.note_on(3, 67, 0.9);
        assert_eq!(p.sounding_voices(), 1);
    }

    #[test]
    fn garbage_values_stay_safe() {
        let mut p = Preview::new(f64::NAN);
        p.set_level(f32::NAN);
        p.note_on(200, 127, f32::INFINITY);
        p.note_on(0, 200, 1.0);
        p.note_off(99, 126);
        p.set_level(1.0);
        p.note_on(0, 0, f32::NAN);
        let (l, r) = run(&mut p, 48_000);
        assert!(l
            .iter()
            .chain(&r)
            .all(|s| s.is_finite() && s.abs() <= CEILING));
        assert_eq!(p.sounding_voices(), 2);
    }

    #[test]
    fn a_phrase_renders_at_its_tempo_and_ends_in_silence() {
        let q = crate::PPQ;
        let mut phrase = crate::Phrase::empty(crate::TimeSignature::FOUR_FOUR, 1);
        for (i, pitch) in [60u8, 64, 67].into_iter().enumerate() {
            phrase.notes.push(crate::Note {
                start: i as u32 * q,
                length: q / 4,
                pitch,
                velocity: 100,
            });
        }
        // One quarter at 60 bpm (1 s), then 30 bpm: notes at 0, 1 and 3 s (a sixteenth each:
        // 0.25 s, then 0.5 s), the bar ends at 7 s.
        let map = [(0, 60.0), (q as u64, 30.0)];
        let rate = 48_000.0;
        let (l, r) = render_phrase(&phrase, &map, rate, 0.5);
        let tail = (RELEASE_TAIL_SECONDS * rate).ceil() as usize;
        assert_eq!(l.len(), 7 * 48_000 + tail);
        assert_eq!(r.len(), l.len());
        assert!(rms(&l[100..10_000]) > 1e-3, "the first note");
        assert!(
            l[12_000 + tail..48_000].iter().all(|&s| s == 0.0),
            "the rest after it"
        );
        assert!(rms(&l[48_100..70_000]) > 1e-3, "the second note at 1 s");
        assert!(l[72_000 + tail..144_000].iter().all(|&s| s == 0.0));
        assert!(rms(&l[144_100..160_000]) > 1e-3, "the third note at 3 s");
        assert!(
            l[l.len() - 4096..].iter().all(|&s| s == 0.0),
            "silent at the end"
        );
    }

    #[test]
    fn a_note_held_for_minutes_never_goes_denormal() {
        let mut p = Preview::new(44_100.0);
        p.note_on(0, 100, 1.0);
        for _ in 0..(120 * 44_100 / 4096) {
            run(&mut p, 4096);
            let v = p.voices.iter().find(|v| v.sounding()).unwrap();
            for x in [v.decay, v.index, v.bell_amp, v.attack, v.release] {
                assert!(x == 0.0 || x.is_normal(), "{x}");
            }
        }
        let (l, _) = run(&mut p, 4096);
        assert!(rms(&l) > 1e-3, "still sounding at its sustain level");
    }

    #[test]
    fn level_scales_the_output() {
        let mut loud = Preview::new(48_000.0);
        let mut quiet = Preview::new(48_000.0);
        quiet.set_level(0.25);
        quiet.reset();
        for p in [&mut loud, &mut quiet] {
            p.note_on(0, 62, 0.6);
        }
        let (a, _) = run(&mut loud, 24_000);
        let (b, _) = run(&mut quiet, 24_000);
        let ratio = rms(&b) / rms(&a);
        assert!((ratio - 0.25).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn a_repeated_key_restarts_without_doubling() {
        let mut p = Preview::new(48_000.0);
        p.note_on(0, 60, 0.7);
        p.note_on(0, 60, 0.7);
        assert_eq!(p.sounding_voices(), 1);
        assert_eq!(p.active_voices(), 2, "the first one releases");
        p.note_off(0, 60);
        assert_eq!(p.sounding_voices(), 0);
    }
}
