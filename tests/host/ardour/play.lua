-- Headless Ardour session (ardour7-lua, Dummy backend): a MIDI track with the SMDIM VST3 and
-- the "SMDIM Capture" Lua DSP after it; sets small generation settings, rolls, presses
-- Generate through the parameter, records note-ons for a while and prints them.
ARDOUR.config():set_hide_dummy_backend(false)
assert (AudioEngine:set_backend ("None (Dummy)", "", ""), "dummy backend")
local dir = os.getenv ("SMDIM_ARDOUR_SESSION")
assert (create_session (dir, "smdim", 48000), "session")
local tl = Session:new_midi_track (ARDOUR.ChanCount (ARDOUR.DataType ("midi"), 1), ARDOUR.ChanCount (ARDOUR.DataType ("audio"), 2), false, ARDOUR.PluginInfo (), nil, nil, 1, "smdim", ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true)
local t = tl:front ()
local p = ARDOUR.LuaAPI.new_plugin (Session, "SMDIM", ARDOUR.PluginType.VST3, "")
assert (not p:isnil (), "SMDIM VST3 not found")
assert (t:add_processor_by_index (p, 0, nil, true) == 0, "plugin added")
local c = ARDOUR.LuaAPI.new_luaproc (Session, "SMDIM Capture")
assert (not c:isnil (), "capture script not found")
assert (t:add_processor_by_index (c, 1, nil, true) == 0, "capture added")
local plug = p:to_insert ():plugin (0)
local index = {}
for i = 0, plug:parameter_count () - 1 do
  index[plug:parameter_label (i)] = i
end
ARDOUR.LuaAPI.set_processor_param (p, index["Bars"], 1)
ARDOUR.LuaAPI.set_processor_param (p, index["Diffusion steps"], 8)
ARDOUR.LuaAPI.set_processor_param (p, index["Density"], 0.25)
Session:request_roll (ARDOUR.TransportRequestSource.TRS_UI)
ARDOUR.LuaAPI.usleep (500000)
ARDOUR.LuaAPI.set_processor_param (p, index["Generate"], 1)
ARDOUR.LuaAPI.usleep (tonumber (os.getenv ("SMDIM_ARDOUR_SECONDS") or "9") * 1000000)
Session:request_stop (false, false, ARDOUR.TransportRequestSource.TRS_UI)
ARDOUR.LuaAPI.usleep (300000)
local shm = c:to_insert ():plugin (0):to_luaproc ():shmem ()
local n = shm:atomic_get_int (0)
local buf = shm:to_int (1):array ()
print ("SMDIM_RATE", Session:nominal_sample_rate ())
for i = 0, n - 1 do
  print ("SMDIM_NOTE", buf[i * 2 + 1], buf[i * 2 + 2])
end
print ("SMDIM_COUNT", n)
-- The track's audio after SMDIM (its preview voice), as a 32-bit float stereo WAV file.
local cap, acap = 4096, 48000 * 12
local A = 1 + cap * 2
local frames = shm:atomic_get_int (A)
local audio = shm:to_float (A + 2):array ()
local rate = Session:nominal_sample_rate ()
local wav = io.open (dir .. "/smdim-preview.wav", "wb")
wav:write ("RIFF", string.pack ("<I4", 36 + frames * 8), "WAVE")
wav:write ("fmt ", string.pack ("<I4I2I2I4I4I2I2", 16, 3, 2, rate, rate * 8, 8, 32))
wav:write ("data", string.pack ("<I4", frames * 8))
local chunk = {}
for i = 1, frames do
  chunk[#chunk + 1] = string.pack ("<ff", audio[i], audio[acap + i])
  if #chunk == 4096 then wav:write (table.concat (chunk)); chunk = {} end
end
wav:write (table.concat (chunk))
wav:close ()
print ("SMDIM_AUDIO", frames, shm:atomic_get_int (A + 1))
Session:save_state ("", false, false, false, false, false)
