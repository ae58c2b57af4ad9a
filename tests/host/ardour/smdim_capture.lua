ardour {
	["type"]    = "dsp",
	name        = "SMDIM Capture",
	category    = "Utility",
	license     = "GPL-3.0-or-later",
	author      = "SMDIM tests",
	description = [[Records note-ons (absolute sample, key) for the SMDIM Ardour test]]
}

local cap = 4096

function dsp_ioconfig ()
	return { { midi_in = 1, midi_out = 1, audio_in = -1, audio_out = -1}, }
end

function dsp_init (rate)
	self:shmem():allocate(1 + cap * 2)
	self:shmem():atomic_set_int(0, 0)
end

function dsp_configure (ins, outs)
	n_out = outs
end

function dsp_runmap (bufs, in_map, out_map, n_samples, offset)
	ARDOUR.DSP.process_map (bufs, n_out, in_map, out_map, n_samples, offset)
	local ib = in_map:get (ARDOUR.DataType ("midi"), 0)
	if ib == ARDOUR.ChanMapping.Invalid then return end
	if not Session:transport_rolling () then return end
	local n = self:shmem():atomic_get_int(0)
	local buffer = self:shmem():to_int(1):array()
	local base = Session:transport_sample ()
	for _, e in pairs (bufs:get_midi (ib):table ()) do
		local ev = e:buffer():array()
		if (ev[1] >> 4) == 9 and ev[3] > 0 and n < cap then
			buffer[n * 2 + 1] = base + e:time ()
			buffer[n * 2 + 2] = ev[2]
			n = n + 1
		end
	end
	self:shmem():atomic_set_int(0, n)
end
