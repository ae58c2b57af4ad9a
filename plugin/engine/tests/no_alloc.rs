//! The scheduler runs on the audio thread: prove it never allocates or frees there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use smdim_engine::phrase::{Note, Phrase, TimeSignature};
use smdim_engine::scheduler::{EventBuffer, PlaybackMode, Scheduler, SwitchMode, Transport};

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note_call() {
    // `try_with`: the allocator can be called while thread-locals are torn down.
    let _ = WATCHING.try_with(|w| {
        if w.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_call();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_call();
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_call();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn watched<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    WATCHING.with(|w| w.set(true));
    let result = f();
    WATCHING.with(|w| w.set(false));
    (result, COUNT.with(|c| c.get()))
}

fn dense_phrase(pitch_offset: u8) -> Arc<Phrase> {
    let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 8);
    phrase.notes = (0..2000u32)
        .map(|i| Note {
            start: (i * 97) % phrase.length_ticks(),
            length: 200 + i % 900,
            pitch: 30 + pitch_offset + (i % 60) as u8,
            velocity: 90,
        })
        .collect();
    phrase.normalize();
    Arc::new(phrase)
}

#[test]
fn process_never_allocates_or_frees() {
    let mut scheduler: Scheduler<Arc<Phrase>> = Scheduler::new();
    let mut out = EventBuffer::default();
    // Sanity: the counter sees allocations.
    let (_, n) = watched(|| Box::new(1u64));
    assert!(n >= 1);

    let phrases = [dense_phrase(0), dense_phrase(5)];
    let mut transport = Transport::playing_at(48_000.0, 174.0, 0.0);
    transport.loop_range = Some((2.0, 14.0));
    let mut retired = Vec::with_capacity(1000);
    let mut total = 0;
    for i in 0..3000u32 {
        if i % 97 == 0 {
            let mode = if i % 2 == 0 {
                SwitchMode::NextBar
            } else {
                SwitchMode::Immediately
            };
            if let Some(p) = scheduler.offer(phrases[(i / 97) as usize % 2].clone(), mode) {
                retired.push(p);
            }
        }
        if i % 501 == 0 {
            scheduler.set_mode([PlaybackMode::Loop, PlaybackMode::Once][(i / 501) as usize % 2]);
        }
        if i % 777 == 0 {
            transport.pos_beats = 9.0;
        }
        transport.playing = i % 1000 < 950;
        let len = [1, 64, 512, 4096][i as usize % 4];
        let ((), allocations) = watched(|| scheduler.process(&transport, len, &mut out));
        total += allocations;
        if let Some(p) = scheduler.take_retired() {
            retired.push(p);
        }
        transport.pos_beats += len as f64 * transport.tempo / 60.0 / 48_000.0;
        if transport.pos_beats >= 14.0 {
            transport.pos_beats -= 12.0;
        }
    }
    let ((), allocations) = watched(|| scheduler.release_all(&mut out));
    assert_eq!(
        total + allocations,
        0,
        "the scheduler allocated on the audio thread"
    );
    assert!(!retired.is_empty(), "phrase switches were exercised");
}
