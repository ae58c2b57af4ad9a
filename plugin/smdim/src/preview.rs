//! The preview voice on the audio output: every note event the host accepts from SMDIM (the
//! phrase and pass-through) is played by [`smdim_engine::preview::Preview`] at its sample.

use nice_plug::midi::{control_change, Channel, Key};
use nice_plug::prelude::NoteEvent;
use smdim_engine::preview::Preview;

use crate::audio::NoteIo;

/// A note sink that also voices what it sends: the audio is rendered up to each event's sample,
/// then the event is applied, so the sound starts and stops exactly with the notes.
pub struct Voiced<'a, Io> {
    io: Io,
    preview: &'a mut Preview,
    left: &'a mut [f32],
    right: &'a mut [f32],
    /// Samples rendered so far.
    at: usize,
}

impl<'a, Io> Voiced<'a, Io> {
    pub fn new(
        io: Io,
        preview: &'a mut Preview,
        left: &'a mut [f32],
        right: &'a mut [f32],
    ) -> Self {
        Voiced {
            io,
            preview,
            left,
            right,
            at: 0,
        }
    }

    fn render_to(&mut self, sample: usize) {
        let end = sample.min(self.left.len()).min(self.right.len());
        if end > self.at {
            self.preview
                .render(&mut self.left[self.at..end], &mut self.right[self.at..end]);
            self.at = end;
        }
    }

    /// Renders the rest of the block.
    pub fn finish(mut self) {
        self.render_to(usize::MAX);
    }
}

impl<S, Io: NoteIo<S>> NoteIo<S> for Voiced<'_, Io> {
    fn next_incoming(&mut self) -> Option<NoteEvent<S>> {
        self.io.next_incoming()
    }

    fn send(&mut self, event: NoteEvent<S>) -> bool {
        let timing = event.timing() as usize;
        let voiced = voice_event(&event);
        let accepted = self.io.send(event);
        // What the host dropped does not sound either: the preview plays exactly the output.
        if accepted {
            if let Some(apply) = voiced {
                // Events arrive in time order; a late one applies where rendering stands.
                self.render_to(timing);
                apply.to(self.preview);
            }
        }
        accepted
    }
}

/// What an output event does to the preview voice.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Voicing {
    On(u8, u8, f32),
    Off(u8, u8),
    Pedal(u8, bool),
    /// Every key of a channel (`None`: of every channel).
    NotesOff(Option<u8>),
    SoundOff(u8),
    Choke(Option<u8>),
}

impl Voicing {
    fn to(self, preview: &mut Preview) {
        match self {
            Voicing::On(channel, key, velocity) => preview.note_on(channel, key, velocity),
            Voicing::Off(channel, key) => preview.note_off(channel, key),
            Voicing::Pedal(channel, down) => preview.pedal(channel, down),
            Voicing::NotesOff(channel) => preview.notes_off(channel),
            Voicing::SoundOff(channel) => preview.sound_off(Some(channel)),
            Voicing::Choke(channel) => preview.sound_off(channel),
        }
    }
}

fn voice_event<S>(event: &NoteEvent<S>) -> Option<Voicing> {
    // Wildcard channels (CLAP allows them) count as channel 1.
    let channel = |c: &Channel| match c {
        Channel::Number(n) => *n,
        Channel::Wildcard => 0,
    };
    match event {
        NoteEvent::NoteOn {
            channel: c,
            key: Key::Number(key),
            velocity,
            ..
        } => Some(if *velocity > 0.0 {
            Voicing::On(channel(c), *key, *velocity)
        } else {
            // A MIDI note-on of velocity 0 is a note-off.
            Voicing::Off(channel(c), *key)
        }),
        NoteEvent::NoteOff {
            channel: c,
            key: Key::Number(key),
            ..
        } => Some(Voicing::Off(channel(c), *key)),
        // CLAP's wildcard note-off ends every matching note.
        NoteEvent::NoteOff {
            channel: c,
            key: Key::Wildcard,
            ..
        } => Some(Voicing::NotesOff(match c {
            Channel::Number(n) => Some(*n),
            Channel::Wildcard => None,
        })),
        NoteEvent::Choke { channel: c, .. } => Some(Voicing::Choke(match c {
            Channel::Number(n) => Some(*n),
            Channel::Wildcard => None,
        })),
        NoteEvent::MidiCC {
            channel, cc, value, ..
        } => match *cc {
            control_change::DAMPER_PEDAL => Some(Voicing::Pedal(*channel, *value >= 0.5)),
            control_change::ALL_NOTES_OFF => Some(Voicing::NotesOff(Some(*channel))),
            control_change::ALL_SOUND_OFF => Some(Voicing::SoundOff(*channel)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nice_plug::midi::VoiceID;

    struct Sink {
        accept: bool,
    }

    impl NoteIo<()> for Sink {
        fn next_incoming(&mut self) -> Option<NoteEvent<()>> {
            None
        }
        fn send(&mut self, _event: NoteEvent<()>) -> bool {
            self.accept
        }
    }

    fn on(timing: u32, key: u8) -> NoteEvent<()> {
        NoteEvent::NoteOn {
            timing,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(0),
            key: Key::Number(key),
            velocity: 0.8,
        }
    }

    fn off(timing: u32, key: u8) -> NoteEvent<()> {
        NoteEvent::NoteOff {
            timing,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(0),
            key: Key::Number(key),
            velocity: 0.0,
        }
    }

    #[test]
    fn the_sound_starts_at_the_note_on_sample() {
        let mut preview = Preview::new(48_000.0);
        let (mut left, mut right) = (vec![1.0f32; 512], vec![1.0f32; 512]);
        let mut io = Voiced::new(Sink { accept: true }, &mut preview, &mut left, &mut right);
        io.send(on(100, 60));
        io.finish();
        assert!(left[..=100].iter().all(|&s| s == 0.0), "silent before");
        assert!(left[101..].iter().any(|&s| s != 0.0), "sounds from 100 on");
        assert!(right[101..].iter().any(|&s| s != 0.0), "stereo");
    }

    #[test]
    fn what_the_host_drops_does_not_sound() {
        let mut preview = Preview::new(48_000.0);
        let (mut left, mut right) = (vec![0.0f32; 256], vec![0.0f32; 256]);
        let mut io = Voiced::new(Sink { accept: false }, &mut preview, &mut left, &mut right);
        assert!(!io.send(on(0, 60)));
        io.finish();
        assert!(left.iter().chain(&right).all(|&s| s == 0.0));
        assert_eq!(preview.active_voices(), 0);
    }

    #[test]
    fn events_map_to_the_voice() {
        assert_eq!(voice_event(&on(0, 61)), Some(Voicing::On(0, 61, 0.8)));
        assert_eq!(voice_event(&off(0, 61)), Some(Voicing::Off(0, 61)));
        let zero = NoteEvent::<()>::NoteOn {
            timing: 0,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(4),
            key: Key::Number(61),
            velocity: 0.0,
        };
        assert_eq!(voice_event(&zero), Some(Voicing::Off(4, 61)));
        let cc = |cc, value| NoteEvent::<()>::MidiCC {
            timing: 0,
            channel: 2,
            cc,
            value,
        };
        assert_eq!(voice_event(&cc(64, 1.0)), Some(Voicing::Pedal(2, true)));
        assert_eq!(voice_event(&cc(64, 0.2)), Some(Voicing::Pedal(2, false)));
        assert_eq!(voice_event(&cc(123, 0.0)), Some(Voicing::NotesOff(Some(2))));
        let all = NoteEvent::<()>::NoteOff {
            timing: 0,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Wildcard,
            key: Key::Wildcard,
            velocity: 0.0,
        };
        assert_eq!(voice_event(&all), Some(Voicing::NotesOff(None)));
        assert_eq!(voice_event(&cc(120, 0.0)), Some(Voicing::SoundOff(2)));
        assert_eq!(voice_event(&cc(1, 0.5)), None);
    }

    #[test]
    fn a_late_event_applies_where_rendering_stands() {
        let mut preview = Preview::new(48_000.0);
        let (mut left, mut right) = (vec![0.0f32; 256], vec![0.0f32; 256]);
        let mut io = Voiced::new(Sink { accept: true }, &mut preview, &mut left, &mut right);
        io.send(on(200, 60));
        io.send(off(50, 60));
        io.send(on(9_999, 64));
        io.finish();
        assert!(left[..=200].iter().all(|&s| s == 0.0));
        assert_eq!(preview.sounding_voices(), 1, "the note past the block end");
    }
}
