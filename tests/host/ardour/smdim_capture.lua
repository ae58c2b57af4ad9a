ardour {
	["type"]    = "dsp",
	name        = "SMDIM Capture",
	category    = "Utility",
	license     = "GPL-3.0-or-later",
	author      = "SMDIM tests",
	description = [[Records note-ons (absolute sample, key) and the audio for the SMDIM Ardour test]]
}

-- Shared memory, in 4-byte cells (play.lua reads the same layout): [0] note count,
-- [1 .. 2 cap] notes (sample, key), [A] audio frames recorded, [A + 1] transport sample of the
-- first one, then acap left samples and acap right samples.
local cap = 4096
local acap = 48000 * 12
local A = 1 + cap * 2

function dsp_ioconfig ()
	return { { midi_in = 1, midi_out = 1, audio_in = -1, audio_out = -1}, }
end

function dsp_init (rate)
	self:shmem():allocate(A + 2 + acap * 2)
	self:shmem():atomic_set_int(0, 0)
	self:shmem():atomic_set_int(A, 0)
end

function dsp_configure (ins, outs)
	n_out = outs
end

function dsp_runmap (bufs, in_map, out_map, n_samples, offset)
	ARDOUR.DSP.process_map (bufs, n_out, in_map, out_map, n_samples, offset)
	if not Session:transport_rolling () then return end
	local shm = self:shmem()
	local base = Session:transport_sample ()
	local a0 = in_map:get (ARDOUR.DataType ("audio"), 0)
	local a1 = in_map:get (ARDOUR.DataType ("audio"), 1)
	if a0 ~= ARDOUR.ChanMapping.Invalid and a1 ~= ARDOUR.ChanMapping.Invalid then
		local frames = shm:atomic_get_int(A)
		if frames == 0 then shm:atomic_set_int(A + 1, base) end
		local k = math.min (n_samples, acap - frames)
		if k > 0 then
			ARDOUR.DSP.copy_vector (shm:to_float (A + 2 + frames), bufs:get_audio (a0):data (offset), k)
			ARDOUR.DSP.copy_vector (shm:to_float (A + 2 + acap + frames), bufs:get_audio (a1):data (offset), k)
			shm:atomic_set_int(A, frames + k)
		end
	end
	local ib = in_map:get (ARDOUR.DataType ("midi"), 0)
	if ib == ARDOUR.ChanMapping.Invalid then return end
	local n = shm:atomic_get_int(0)
	local buffer = shm:to_int(1):array()
	for _, e in pairs (bufs:get_midi (ib):table ()) do
		local ev = e:buffer():array()
		if (ev[1] >> 4) == 9 and ev[3] > 0 and n < cap then
			buffer[n * 2 + 1] = base + e:time ()
			buffer[n * 2 + 2] = ev[2]
			n = n + 1
		end
	end
	shm:atomic_set_int(0, n)
end
