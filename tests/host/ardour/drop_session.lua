-- An empty Ardour session for the timeline drop test (ardour7-lua, Dummy backend): one MIDI
-- track "smdim" at 100 bpm, 4/4, 48 kHz, saved for the GUI to open.
ARDOUR.config():set_hide_dummy_backend(false)
assert (AudioEngine:set_backend ("None (Dummy)", "", ""), "dummy backend")
local dir = os.getenv ("SMDIM_ARDOUR_SESSION")
assert (create_session (dir, "smdim", 48000), "session")
local tl = Session:new_midi_track (ARDOUR.ChanCount (ARDOUR.DataType ("midi"), 1), ARDOUR.ChanCount (ARDOUR.DataType ("audio"), 2), false, ARDOUR.PluginInfo (), nil, nil, 1, "smdim", ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true)
assert (tl:size () == 1, "track")
local tm = Temporal.TempoMap.write_copy ()
tm:set_tempo (Temporal.Tempo (100, 100, 4), Temporal.timepos_t (0))
Temporal.TempoMap.update (tm)
Session:save_state ("", false, false, false, false, false)
print ("SMDIM_SESSION_READY")
