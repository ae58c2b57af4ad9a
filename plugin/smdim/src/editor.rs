//! The egui editor: piano roll with bar lines and the host playhead, Generate / Variation /
//! Cancel, undo/redo through the history, progress, the compute device setting with the
//! provider in use (fallback reasons on hover), timing, errors (a style the model lacks among
//! them), Export .mid, the Style selector and the other generation parameters, and the drag
//! handle (the phrase as a .mid dragged into the DAW; Copy path as a fallback).
//!
//! It never blocks on generation: everything it shows comes from [`Shared`] snapshots, and
//! every action is a request to the generation thread (Cancel: an atomic it reads).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use egui::{Color32, Pos2, Rect, Sense, Stroke, Vec2};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::LogicalSize;
use nice_plug::prelude::*;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{create_egui_editor, EguiNiceSettings, NiceEguiApp, RepaintNotifier};
use smdim_engine::phrase::PPQ;
use smdim_inference::Style;

use crate::drag::{self, DragState};
use crate::export;
use crate::model;
use crate::params::{SmdimParams, StyleParam};
use crate::shared::{fallback_notes, Phase, Request, Shared, Status};
use crate::state::{device_label, DEVICES};
use smdim_engine::sampler::edit::Edit;

pub const GENERATE_LABEL: &str = "Generate";
/// The button that asks for four variations at once (next to Variation).
pub const FOUR_VARIATIONS_LABEL: &str = "×4";

pub struct SmdimEditor {
    params: Arc<SmdimParams>,
    shared: Arc<Shared>,
    gui: Option<GuiContext>,
    egui_ctx: Option<egui::Context>,
    export_message: Option<Result<String, String>>,
    drag_state: Arc<parking_lot::Mutex<Option<DragState>>>,
    preloaded: bool,
    /// The edit controls (editor-local: choosing them is not automation).
    keep_bars: u32,
    infill: (u32, u32),
    vary_strength: f32,
    keep_rhythm: bool,
    source_key: bool,
    /// What the last .mid dropped onto the editor holds (shown beside the source).
    opened: Option<String>,
}

pub fn create(
    params: Arc<SmdimParams>,
    shared: Arc<Shared>,
) -> Option<nice_plug_egui::EguiEditor<SmdimEditor>> {
    let settings = EguiNiceSettings::new()
        .with_tile("SMDIM")
        .with_resize_hint(
            ResizeHint::resizable().with_min_logical_size(LogicalSize::new(560.0, 360.0)),
        )
        .with_repaint_poll_interval(Duration::from_millis(16));
    create_egui_editor(
        params.editor_state.clone(),
        RepaintNotifier::new(),
        settings,
        SmdimEditor {
            params,
            shared,
            gui: None,
            egui_ctx: None,
            export_message: None,
            drag_state: Arc::new(parking_lot::Mutex::new(None)),
            preloaded: false,
            keep_bars: 2,
            infill: (2, 2),
            vary_strength: 0.3,
            keep_rhythm: false,
            source_key: true,
            opened: None,
        },
    )
}

impl SmdimEditor {
    fn piano_roll(&self, ui: &mut egui::Ui, height: f32) {
        let width = ui.available_width();
        let (response, painter) = ui.allocate_painter(Vec2::new(width, height), Sense::hover());
        let rect = response.rect;
        painter.rect_filled(rect, 4.0, Color32::from_rgb(24, 26, 32));
        // The phrase that plays; over it the source (green) and what is captured (orange).
        let current = self.shared.current();
        let source = self.shared.source();
        let capture = self
            .shared
            .capture_preview(self.params.bars.value().max(1) as u32);
        let Some(phrase) = current
            .as_ref()
            .map(|c| c.phrase.clone())
            .or_else(|| source.as_deref().cloned())
            .or_else(|| capture.clone())
        else {
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "No phrase yet: press Generate (or play into SMDIM and Use capture)",
                egui::FontId::proportional(16.0),
                Color32::GRAY,
            );
            return;
        };
        let phrase = &phrase;
        let total = phrase.length_ticks().max(1) as f32;
        // At least two octaves around the notes, so a sparse phrase still reads as a roll.
        let (lo, hi) = match (phrase.lowest_pitch(), phrase.highest_pitch()) {
            (Some(lo), Some(hi)) => {
                let (mut lo, mut hi) = (lo.saturating_sub(2) as i32, (hi as i32 + 2).min(127));
                while hi - lo < 24 {
                    lo = (lo - 1).max(0);
                    hi = (hi + 1).min(127);
                }
                (lo as u8, hi as u8)
            }
            _ => (48, 84),
        };
        let rows = (hi - lo + 1) as f32;
        let x_of = |tick: f32| rect.left() + tick / total * rect.width();
        let y_of = |pitch: u8| rect.bottom() - (pitch - lo + 1) as f32 / rows * rect.height();
        // Black-key rows a little darker.
        for pitch in lo..=hi {
            if matches!(pitch % 12, 1 | 3 | 6 | 8 | 10) {
                let y = y_of(pitch);
                painter.rect_filled(
                    Rect::from_min_max(
                        Pos2::new(rect.left(), y),
                        Pos2::new(rect.right(), y + rect.height() / rows),
                    ),
                    0.0,
                    Color32::from_rgb(19, 20, 25),
                );
            }
        }
        // Beat and bar lines.
        let ts = phrase.time_signature;
        let beat = ts.beat_ticks();
        let bar = ts.bar_ticks();
        let mut tick = 0;
        while tick <= phrase.length_ticks() {
            let strong = tick % bar == 0;
            let color = if strong {
                Color32::from_gray(120)
            } else {
                Color32::from_gray(55)
            };
            let x = x_of(tick as f32);
            painter.line_segment(
                [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
                Stroke::new(if strong { 1.5 } else { 0.5 }, color),
            );
            if strong && tick < phrase.length_ticks() {
                painter.text(
                    Pos2::new(x + 3.0, rect.top() + 2.0),
                    egui::Align2::LEFT_TOP,
                    format!("{}", tick / bar + 1),
                    egui::FontId::monospace(11.0),
                    Color32::from_gray(160),
                );
            }
            tick += beat.max(1);
        }
        // C rows.
        for pitch in lo..=hi {
            if pitch % 12 == 0 {
                let y = y_of(pitch) + rect.height() / rows;
                painter.text(
                    Pos2::new(rect.left() + 2.0, y),
                    egui::Align2::LEFT_BOTTOM,
                    smdim_engine::theory::pitch_name(pitch),
                    egui::FontId::monospace(10.0),
                    Color32::from_gray(130),
                );
            }
        }
        for note in &phrase.notes {
            let x0 = x_of(note.start as f32);
            let x1 = x_of(note.end() as f32).max(x0 + 2.0);
            let y0 = y_of(note.pitch);
            let h = (rect.height() / rows).max(2.0);
            let v = note.velocity as f32 / 127.0;
            let color = Color32::from_rgb((90.0 + 140.0 * v) as u8, (140.0 + 60.0 * v) as u8, 230);
            painter.rect_filled(
                Rect::from_min_max(Pos2::new(x0, y0), Pos2::new(x1, y0 + h - 1.0)),
                2.0,
                color,
            );
        }
        let h = (rect.height() / rows).max(2.0);
        for (overlay, color) in [
            (source.as_deref(), Color32::from_rgb(110, 210, 120)),
            (capture.as_ref(), Color32::from_rgb(255, 150, 60)),
        ] {
            for note in overlay.map(|p| p.notes.as_slice()).unwrap_or_default() {
                if note.pitch < lo || note.pitch > hi || note.start as f32 >= total {
                    continue;
                }
                let x0 = x_of(note.start as f32);
                let x1 = x_of((note.end() as f32).min(total)).max(x0 + 2.0);
                let y0 = y_of(note.pitch);
                painter.rect_stroke(
                    Rect::from_min_max(Pos2::new(x0, y0), Pos2::new(x1, y0 + h - 1.0)),
                    2.0,
                    Stroke::new(1.5, color),
                    egui::StrokeKind::Inside,
                );
            }
        }
        let playhead = self.shared.transport.playhead.load(Ordering::Relaxed);
        if playhead >= 0.0 {
            let x = x_of((playhead * PPQ as f64) as f32);
            painter.line_segment(
                [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
                Stroke::new(2.0, Color32::from_rgb(255, 200, 60)),
            );
        }
    }

    /// The "Compute device" combo box, and the provider actually running the model. Fallback
    /// reasons stay out of the way (one muted note, the reasons on hover): running on the CPU
    /// is a normal state, not an error.
    fn device_line(&self, ui: &mut egui::Ui, status: &Status) {
        let device = self.shared.device();
        let mut chosen = device;
        ui.label("Compute device");
        egui::ComboBox::from_id_salt("compute-device")
            .selected_text(device_label(device))
            .show_ui(ui, |ui| {
                for choice in DEVICES {
                    ui.selectable_value(&mut chosen, choice, device_label(choice));
                }
            })
            .response
            .on_hover_text(
                "Where the model runs. GPU choices need the SMDIM GPU pack and fall back to \
                 the next one (to the CPU at last) when unavailable. Changing it reloads the \
                 model; a generation already running finishes first.",
            );
        if chosen != device {
            self.shared.set_device(chosen);
        }
        let provider = match (status.provider, status.phase) {
            (Some(p), _) => p.name(),
            (None, Phase::Loading) => "loading…",
            (None, _) if status.loads == 0 => "not loaded yet",
            (None, _) => "not loaded",
        };
        ui.label(format!("Provider: {provider}"));
        let notes = fallback_notes(status);
        if !notes.is_empty() {
            let skipped: Vec<&str> = status.fallbacks.iter().map(|(p, _)| p.name()).collect();
            ui.label(egui::RichText::new(format!("({} unavailable)", skipped.join(", "))).weak())
                .on_hover_text(notes.join("\n"));
        }
    }

    fn status_line(&self, ui: &mut egui::Ui) {
        let status = self.shared.status();
        let current = self.shared.current();
        ui.horizontal_wrapped(|ui| {
            self.device_line(ui, &status);
            ui.separator();
            match status.last_elapsed {
                Some(t) if t.as_secs_f64() < 1.0 => ui.label(format!(
                    "Last generation: {:.0} ms",
                    t.as_secs_f64() * 1000.0
                )),
                Some(t) => ui.label(format!("Last generation: {:.2} s", t.as_secs_f64())),
                None => ui.label("Last generation: -"),
            };
            if let Some(current) = &current {
                ui.separator();
                ui.label(format!(
                    "{}, {} bars, {} notes, seed {}, {} steps",
                    current.settings.style,
                    current.phrase.bars,
                    current.phrase.notes.len(),
                    current.settings.seed,
                    current.steps
                ));
            }
            ui.separator();
            let model_note = if model::IS_TEST_MODEL {
                format!("Model: {} (TEST MODEL: 1-2 bars only)", model::name())
            } else {
                format!("Model: {}", model::name())
            };
            ui.label(model_note);
        });
    }

    /// The Style parameter as a combo box: three named choices read better than a slider.
    fn style_selector(&self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let param = &self.params.style;
        let current = param.value().0;
        let mut chosen = current;
        egui::ComboBox::from_id_salt("style")
            .selected_text(current.name())
            .show_ui(ui, |ui| {
                for style in Style::ALL {
                    ui.selectable_value(&mut chosen, style, style.name());
                }
            })
            .response
            .on_hover_text(
                "Melody: a folk-tune line. Chorale: four voices. Any: no style asked for. \
                 Melody and Chorale need a style-conditioned model; with another one, \
                 choose Any.",
            );
        if chosen != current {
            setter.begin_set_parameter(param);
            setter.set_parameter(param, StyleParam(chosen));
            setter.end_set_parameter(param);
        }
    }

    fn params_panel(&self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let p = &self.params;
        egui::Grid::new("params")
            .num_columns(4)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                ui.label("Style");
                self.style_selector(ui, setter);
                ui.end_row();
                ui.label("Bars");
                ui.add(ParamSlider::for_param(&p.bars, setter));
                ui.label("Steps");
                ui.add(ParamSlider::for_param(&p.steps, setter));
                ui.end_row();
                ui.label("Temperature");
                ui.add(ParamSlider::for_param(&p.temperature, setter));
                ui.label("Density");
                ui.add(ParamSlider::for_param(&p.density, setter));
                ui.end_row();
                ui.label("Lowest");
                ui.add(ParamSlider::for_param(&p.lowest_pitch, setter));
                ui.label("Highest");
                ui.add(ParamSlider::for_param(&p.highest_pitch, setter));
                ui.end_row();
                ui.label("Key");
                ui.add(ParamSlider::for_param(&p.key, setter));
                ui.label("Scale");
                ui.add(ParamSlider::for_param(&p.scale, setter));
                ui.end_row();
                ui.label("Seed");
                ui.add(ParamSlider::for_param(&p.seed, setter));
                ui.label("New seed");
                ui.add(ParamSlider::for_param(&p.new_seed, setter));
                ui.end_row();
                ui.label("Velocity");
                ui.add(ParamSlider::for_param(&p.velocity, setter));
                ui.label("Playback");
                ui.add(ParamSlider::for_param(&p.mode, setter));
                ui.end_row();
                ui.label("Channel");
                ui.add(ParamSlider::for_param(&p.channel, setter));
                ui.label("Pass-through");
                ui.add(ParamSlider::for_param(&p.pass_through, setter));
                ui.end_row();
                ui.label("Preview sound");
                ui.add(ParamSlider::for_param(&p.preview, setter));
                ui.label("Preview level");
                ui.add(ParamSlider::for_param(&p.preview_level, setter));
                ui.end_row();
            });
    }

    /// Writes the phrase into the drag folder; `None` without a phrase.
    fn write_drag_file(&self) -> Option<Result<std::path::PathBuf, String>> {
        let current = self.shared.current()?;
        let view = &self.shared.transport;
        let channel = self.params.midi_channel();
        Some(drag::write_drag_file(
            &current,
            &drag::drag_dir(),
            view.tempo(),
            view.time_signature(),
            channel,
            "SMDIM",
        ))
    }

    /// The drag handle was pulled: write the file, then drag it on its own thread (X11).
    #[cfg(not(any(windows, target_os = "macos")))]
    fn start_drag(&mut self, window: u32) {
        match self.write_drag_file() {
            Some(Ok(path)) => drag::spawn_drag(window, path, self.drag_state.clone()),
            Some(Err(e)) => *self.drag_state.lock() = Some(DragState::Failed(e)),
            None => {}
        }
    }

    /// Windows and macOS: the system drag runs on this (the GUI) thread; see
    /// `smdim_drag::start_native_file_drag`. Untested: these targets cannot be built here.
    #[cfg(any(windows, target_os = "macos"))]
    fn start_native_drag(&mut self, window: &impl raw_window_handle::HasWindowHandle) {
        match self.write_drag_file() {
            Some(Ok(path)) => {
                let state = self.drag_state.clone();
                *state.lock() = Some(DragState::Dragging);
                let shown = path.display().to_string();
                let ended = state.clone();
                let started = smdim_drag::start_native_file_drag(window, &path, move |dropped| {
                    *ended.lock() = Some(if dropped {
                        DragState::Done(format!("Dropped {shown}"))
                    } else {
                        DragState::Done("Drag cancelled".into())
                    });
                });
                if let Err(e) = started {
                    *state.lock() = Some(DragState::Failed(e.to_string()));
                }
            }
            Some(Err(e)) => *self.drag_state.lock() = Some(DragState::Failed(e)),
            None => {}
        }
    }

    fn copy_path(&mut self, ctx: &egui::Context) {
        match self.write_drag_file() {
            Some(Ok(path)) => {
                ctx.copy_text(path.display().to_string());
                *self.drag_state.lock() =
                    Some(DragState::Done(format!("Copied {}", path.display())));
            }
            Some(Err(e)) => *self.drag_state.lock() = Some(DragState::Failed(e)),
            None => {}
        }
    }

    fn export(&mut self) {
        let Some(current) = self.shared.current() else {
            return;
        };
        let view = &self.shared.transport;
        let channel = self.params.midi_channel();
        self.export_message = Some(match export::export_dir() {
            Some(dir) => {
                export::export_mid(&current, &dir, view.tempo(), view.time_signature(), channel)
                    .map(|p| p.display().to_string())
            }
            None => Err("no home folder to export into (set SMDIM_EXPORT_DIR)".into()),
        });
        if let Some(Err(e)) = &self.export_message {
            nice_log!("SMDIM export failed: {e}");
        }
    }
}

impl SmdimEditor {
    /// The source (captured or loaded) and the edits on it: Use capture, Continue, Infill, Vary.
    fn edit_row(&mut self, ui: &mut egui::Ui, generating: bool) {
        // A .mid dropped onto the editor becomes the source.
        let (hovering, dropped) = ui.ctx().input(|i| {
            (
                !i.raw.hovered_files.is_empty(),
                i.raw
                    .dropped_files
                    .iter()
                    .map(|f| f.path().to_path_buf())
                    .collect::<Vec<_>>(),
            )
        });
        if let Some(path) = dropped.first() {
            match self.shared.open_source_file(path) {
                Ok(summary) => {
                    nice_plug::nice_log!("SMDIM: source {summary}");
                    self.opened = Some(summary);
                    self.shared.set_error(None);
                }
                Err(e) => self.shared.set_error(Some(e)),
            }
        }
        let bars = self.params.bars.value().max(1) as u32;
        let source = self.shared.source();
        let (captured, dropped) = self.shared.captured();
        ui.horizontal_wrapped(|ui| {
            match &source {
                Some(s) => ui.colored_label(
                    Color32::from_rgb(110, 210, 120),
                    format!(
                        "Source: {} notes, {} bars of {}",
                        s.notes.len(),
                        s.bars,
                        s.time_signature
                    ),
                ),
                None => ui.label("Source: none"),
            }
            .on_hover_text(
                "What Continue, Infill and Vary work on. Play into SMDIM's note input while the \
                 transport runs, then Use capture (the host loop, or the last Bars bars), or drop \
                 a .mid file onto this window.",
            );
            if hovering {
                ui.colored_label(
                    Color32::from_rgb(110, 210, 120),
                    "Drop the .mid to make it the source",
                );
            } else if let (Some(opened), Some(_)) = (&self.opened, &source) {
                ui.label(opened);
            }
            let label = if dropped > 0 {
                format!(
                    "Use capture ({} notes; {dropped} did not fit)",
                    captured.len()
                )
            } else {
                format!("Use capture ({} notes)", captured.len())
            };
            if ui
                .add_enabled(!captured.is_empty(), egui::Button::new(label))
                .clicked()
            {
                if let Err(e) = self.shared.use_capture(bars) {
                    self.shared.set_error(Some(e));
                }
            }
            if ui
                .add_enabled(!captured.is_empty(), egui::Button::new("Clear capture"))
                .clicked()
            {
                self.shared.clear_capture();
            }
        });
        ui.horizontal(|ui| {
            let ready = source.is_some() && !generating;
            let source_bars = source.as_ref().map_or(1, |s| s.bars.max(1));
            if ui
                .add_enabled(ready, egui::Button::new("Continue"))
                .on_hover_text("Keep the first bars note for note; generate the rest up to Bars")
                .clicked()
            {
                self.shared.request(Request::Edit {
                    edit: Edit::Continue {
                        keep_bars: self.keep_bars,
                    },
                    source_key: self.source_key,
                });
            }
            ui.label("keep");
            ui.add(
                egui::DragValue::new(&mut self.keep_bars)
                    .range(1..=source_bars.min(bars.saturating_sub(1)).max(1))
                    .suffix(" bars"),
            );
            ui.separator();
            if ui
                .add_enabled(ready, egui::Button::new("Infill"))
                .on_hover_text("Regenerate these bars; every other bar stays note for note")
                .clicked()
            {
                self.shared.request(Request::Edit {
                    edit: Edit::Infill {
                        from: self.infill.0,
                        to: self.infill.1.max(self.infill.0),
                    },
                    source_key: self.source_key,
                });
            }
            ui.add(egui::DragValue::new(&mut self.infill.0).range(1..=source_bars));
            ui.label("to");
            ui.add(egui::DragValue::new(&mut self.infill.1).range(self.infill.0..=source_bars));
            ui.separator();
            if ui
                .add_enabled(ready, egui::Button::new("Vary"))
                .on_hover_text("Make this share of the source's notes new; 0 % gives it back")
                .clicked()
            {
                self.shared.request(Request::Edit {
                    edit: Edit::Vary {
                        strength: self.vary_strength as f64,
                        keep_rhythm: self.keep_rhythm,
                    },
                    source_key: self.source_key,
                });
            }
            let mut percent = self.vary_strength * 100.0;
            ui.spacing_mut().slider_width = 60.0;
            ui.add(
                egui::Slider::new(&mut percent, 0.0..=100.0)
                    .suffix(" %")
                    .fixed_decimals(0),
            );
            self.vary_strength = percent / 100.0;
            ui.checkbox(&mut self.keep_rhythm, "Keep rhythm");
            ui.separator();
            ui.checkbox(&mut self.source_key, "In the source's key")
                .on_hover_text(
                    "With Key set to None, new notes keep the source's major or minor key \
                 (estimated from the kept notes). Continuations of real tunes come out far closer \
                 to the composer's with it (docs/model/CONTINUATION.md).",
                );
        });
        if let Some(report) = self.shared.status().last_quantised {
            if report.moved + report.resized + report.dropped_pitch > 0 {
                ui.label(
                    egui::RichText::new(format!(
                        "Source on the model's grid: {} notes moved, {} resized, {} out of range",
                        report.moved, report.resized, report.dropped_pitch
                    ))
                    .weak(),
                );
            }
        }
    }
}

impl NiceEguiApp for SmdimEditor {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        nice_gui_ctx: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.egui_ctx = Some(egui_ctx);
        self.gui = Some(nice_gui_ctx);
        if !self.preloaded {
            // Opening the editor is the moment to load ONNX Runtime and the model (on the
            // generator's own thread).
            self.shared.request(Request::Preload);
            self.preloaded = true;
        }
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut nice_plug_egui::Frame) {
        let drag_state = self.drag_state.lock().clone();
        if drag_state == Some(DragState::Dragging) {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        let phase = self.shared.phase();
        let generating = phase != Phase::Idle;
        let playing = self.shared.transport.playing.load(Ordering::Relaxed);
        if generating || playing {
            ui.ctx().request_repaint();
        }

        // Generate comes first, at the top-left corner (the editor smoke test clicks there).
        ui.horizontal(|ui| {
            let generate = ui.add_enabled(
                !generating,
                egui::Button::new(GENERATE_LABEL).min_size(Vec2::new(96.0, 28.0)),
            );
            if generate.clicked() {
                self.shared.request(Request::Generate);
            }
            if ui
                .add_enabled(
                    !generating && self.shared.current().is_some(),
                    egui::Button::new("Variation"),
                )
                .on_hover_text("Same settings, new seed")
                .clicked()
            {
                self.shared.request(Request::Variation);
            }
            if ui
                .add_enabled(
                    !generating && self.shared.current().is_some(),
                    egui::Button::new(FOUR_VARIATIONS_LABEL),
                )
                .on_hover_text(
                    "Four variations in one run: all join the history, the last one plays; \
                     Undo steps back through the others",
                )
                .clicked()
            {
                self.shared.request(Request::Variations(4));
            }
            if ui
                .add_enabled(generating, egui::Button::new("Cancel"))
                .clicked()
            {
                self.shared.request(Request::Cancel);
            }
            ui.separator();
            if ui
                .add_enabled(self.shared.can_undo(), egui::Button::new("Undo"))
                .clicked()
            {
                self.shared.step(-1);
            }
            if ui
                .add_enabled(self.shared.can_redo(), egui::Button::new("Redo"))
                .clicked()
            {
                self.shared.step(1);
            }
            ui.separator();
            if ui
                .add_enabled(
                    self.shared.current().is_some(),
                    egui::Button::new("Export .mid"),
                )
                .clicked()
            {
                self.export();
            }
            let has_phrase = self.shared.current().is_some();
            let handle = ui
                .add_enabled(
                    has_phrase && drag_state != Some(DragState::Dragging),
                    egui::Button::new("Drag .mid").sense(Sense::click_and_drag()),
                )
                .on_hover_text("Drag the phrase into the DAW timeline as a MIDI clip");
            if handle.drag_started() {
                #[cfg(any(windows, target_os = "macos"))]
                self.start_native_drag(frame.baseview_window());
                #[cfg(not(any(windows, target_os = "macos")))]
                {
                    use raw_window_handle::HasWindowHandle;
                    // The editor's own X11 window (baseview's); 0 (the root window) when unknown.
                    let window_id = frame
                        .baseview_window()
                        .window_handle()
                        .ok()
                        .and_then(|h| drag::x11_window_id(h.as_raw()))
                        .unwrap_or(0);
                    self.start_drag(window_id);
                }
            }
            if ui
                .add_enabled(has_phrase, egui::Button::new("Copy path"))
                .on_hover_text("Write the phrase as a .mid and copy its path")
                .clicked()
            {
                self.copy_path(ui.ctx());
            }
            ui.separator();
            ui.heading("SMDIM");
        });

        self.edit_row(ui, generating);

        if generating {
            let label = match phase {
                Phase::Loading => "Loading model…".to_string(),
                _ => format!(
                    "Generating… {:.1} s",
                    self.shared.since_request_ms().unwrap_or(0.0) / 1000.0
                ),
            };
            ui.add(
                egui::ProgressBar::new(self.shared.progress())
                    .show_percentage()
                    .text(label),
            );
        }
        if let Some(error) = self.shared.error() {
            ui.colored_label(Color32::from_rgb(255, 110, 100), format!("Error: {error}"));
        }
        match &self.export_message {
            Some(Ok(path)) => {
                ui.label(format!("Exported to {path}"));
            }
            Some(Err(e)) => {
                ui.colored_label(
                    Color32::from_rgb(255, 110, 100),
                    format!("Export failed: {e}"),
                );
            }
            None => {}
        }
        match &drag_state {
            Some(DragState::Dragging) => {
                ui.label("Dragging… (Escape cancels)");
            }
            Some(DragState::Done(text)) => {
                ui.label(text);
            }
            Some(DragState::Failed(e)) => {
                ui.colored_label(Color32::from_rgb(255, 110, 100), format!("Drag: {e}"));
            }
            None => {}
        }
        self.status_line(ui);

        let params_height = 240.0;
        let roll_height = (ui.available_height() - params_height).max(120.0);
        self.piano_roll(ui, roll_height);
        ui.add_space(4.0);
        if let Some(gui) = self.gui.clone() {
            let setter = gui.param_setter();
            self.params_panel(ui, &setter);
        }
    }
}
