-- Reopens the session written by play.lua (its SMDIM state included), rolls without pressing
-- Generate and prints the note-ons: the reloaded plugin must play the same phrase.
ARDOUR.config():set_hide_dummy_backend(false)
assert (AudioEngine:set_backend ("None (Dummy)", "", ""), "dummy backend")
local dir = os.getenv ("SMDIM_ARDOUR_SESSION")
assert (load_session (dir, "smdim"), "session loads")
local r = Session:route_by_name ("smdim")
assert (not r:isnil (), "track")
local c = r:nth_plugin (1)
assert (not c:isnil (), "capture processor")
Session:request_roll (ARDOUR.TransportRequestSource.TRS_UI)
ARDOUR.LuaAPI.usleep (tonumber (os.getenv ("SMDIM_ARDOUR_SECONDS") or "5") * 1000000)
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
