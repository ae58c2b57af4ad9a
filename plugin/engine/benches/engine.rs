//! `cargo bench -p smdim-engine`: scheduler and preview-voice cost per audio block, decoder
//! throughput.
//!
//! The scheduler figure to compare is time per 64-sample block against the block's real-time
//! length at 48 kHz (1.333 ms). The `audio_512` group puts the preview voice at 16 sounding
//! notes next to the scheduler on the same 512-sample block (10.67 ms of real time at 48 kHz).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smdim_engine::codec::{decode, Encoder};
use smdim_engine::phrase::{Note, Phrase, TimeSignature};
use smdim_engine::preview::Preview;
use smdim_engine::scheduler::{EventBuffer, Scheduler, Transport};
use smdim_engine::Vocabulary;

fn dense_phrase() -> Phrase {
    let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 8);
    let length = phrase.length_ticks();
    phrase.notes = (0..2000u32)
        .map(|i| Note {
            start: (i * 15) % length,
            length: 240 + (i % 4) * 120,
            pitch: 36 + (i % 48) as u8,
            velocity: 100,
        })
        .collect();
    phrase.normalize();
    phrase
}

fn scheduler(c: &mut Criterion) {
    let phrase = Arc::new(dense_phrase());
    assert!(phrase.notes.len() >= 1900);
    let mut group = c.benchmark_group("scheduler");
    for (name, playing) in [("dense_2000_notes_48k_64", true), ("stopped_48k_64", false)] {
        let mut scheduler: Scheduler<Arc<Phrase>> = Scheduler::new();
        scheduler.offer(phrase.clone(), Default::default());
        let mut out = EventBuffer::default();
        let mut transport = Transport::playing_at(48_000.0, 120.0, 0.0);
        transport.playing = playing;
        let step = 64.0 * 120.0 / 60.0 / 48_000.0;
        group.bench_function(name, |b| {
            b.iter(|| {
                scheduler.process(black_box(&transport), 64, &mut out);
                transport.pos_beats += step;
                if transport.pos_beats > 1e6 {
                    transport.pos_beats = 0.0;
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decoder(c: &mut Criterion) {
    let vocab = Vocabulary::remi_v1();
    let (tokens, _) = Encoder::new(vocab).encode(&dense_phrase()).unwrap();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(tokens.len() as u64));
    group.bench_function("decode_tokens", |b| {
        b.iter(|| decode(vocab, black_box(&tokens)).phrase.notes.len())
    });
    // Ids 3.. skip PAD/BOS/EOS so the decoder walks the whole sequence.
    let random: Vec<u32> = (0..tokens.len() as u32)
        .map(|i| 3 + (i.wrapping_mul(2_654_435_761) >> 7) % 297)
        .collect();
    group.bench_function("decode_random_ids", |b| {
        b.iter(|| decode(vocab, black_box(&random)).report.skipped())
    });
    let phrase = dense_phrase();
    group.bench_function("encode_phrase", |b| {
        b.iter(|| {
            Encoder::new(vocab)
                .encode(black_box(&phrase))
                .unwrap()
                .0
                .len()
        })
    });
    group.finish();
}

fn audio_512(c: &mut Criterion) {
    const BLOCK: u32 = 512;
    let mut group = c.benchmark_group("audio_512");
    let phrase = Arc::new(dense_phrase());
    let mut scheduler: Scheduler<Arc<Phrase>> = Scheduler::new();
    scheduler.offer(phrase, Default::default());
    let mut out = EventBuffer::default();
    let mut transport = Transport::playing_at(48_000.0, 120.0, 0.0);
    let step = BLOCK as f64 * 120.0 / 60.0 / 48_000.0;
    group.bench_function("scheduler_dense_48k", |b| {
        b.iter(|| {
            scheduler.process(black_box(&transport), BLOCK, &mut out);
            transport.pos_beats += step;
            if transport.pos_beats > 1e6 {
                transport.pos_beats = 0.0;
            }
            black_box(out.len())
        })
    });
    let mut preview = Preview::new(48_000.0);
    // 16 held notes over four octaves: the voice at a dense chorale's polyphony and beyond.
    for i in 0..16u8 {
        preview.note_on(0, 40 + i * 3, 0.8);
    }
    assert_eq!(preview.sounding_voices(), 16);
    let (mut left, mut right) = (vec![0.0f32; BLOCK as usize], vec![0.0f32; BLOCK as usize]);
    group.bench_function("preview_16_notes_48k", |b| {
        b.iter(|| {
            preview.render(&mut left, &mut right);
            black_box(left[7])
        })
    });
    let mut idle = Preview::new(48_000.0);
    group.bench_function("preview_idle_48k", |b| {
        b.iter(|| {
            idle.render(&mut left, &mut right);
            black_box(left[7])
        })
    });
    group.finish();
}

criterion_group!(benches, scheduler, decoder, audio_512);
criterion_main!(benches);
