//! A fleet of hosts scraped by Prometheus with node_exporter: about a thousand series per host with
//! the metric families, label sets and value dynamics of a real exporter, each host scraped every
//! interval at its own offset, with a few milliseconds of jitter on some scrapes.
//!
//! Compression ratios depend on how values move, so the dynamics follow what the kernel and the
//! exporter really report: CPU time in 1/100 s ticks, byte counters growing by uneven integers, memory
//! in whole pages, load averages with two decimals, clocks and durations at full float precision, and
//! many series that never change. Everything is a pure function of the seed.

use anyhow::ensure;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// CPUs of every host; node_exporter has several families per CPU, so this sets most of the size.
const CPUS: usize = 16;

/// Largest jitter of a scrape, in milliseconds either way.
const JITTER_MS_MAX: i64 = 4;

/// Shape of the generated fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Hosts, named `host-001:9100` upwards.
    pub hosts: u32,
    /// Scrape interval, in milliseconds.
    pub interval_ms: i64,
    /// Share of scrapes, 0 to 1, whose timestamp is a few milliseconds off the interval, as scrapes
    /// delayed by the scheduler are. Each costs a timestamp codec more than an exact one.
    pub jitter_share: f64,
}

/// How a series' value moves from one scrape to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dynamics {
    /// Never changes.
    Constant,
    /// A counter of whole units growing by about `per_s` units a second; the value is
    /// `units * multiplier / divisor`, as the exporter converts ticks, sectors or nanoseconds.
    Counter { per_s: f64, multiplier: f64, divisor: f64 },
    /// A gauge that moves by whole `step`s (pages, bytes, counts), at most `steps_max` at a time, and
    /// stays within `min..=max`.
    Walk { step: f64, steps_max: u32, min: f64, max: f64 },
    /// A gauge that wanders around `mean` by about `spread`, reported with `1 / scale` resolution.
    Wander { mean: f64, spread: f64, scale: f64 },
    /// The exporter's clock: the scrape time in seconds, with nanoseconds.
    Clock,
    /// A measured duration around `mean_s` seconds, at full float precision.
    Duration { mean_s: f64 },
}

/// One series of a host before the fleet-wide `job` and `instance` labels are added.
#[derive(Debug, Clone)]
struct SeriesSpec {
    /// Metric name and labels, `__name__` included, sorted by label name.
    labels: Vec<(String, String)>,
    dynamics: Dynamics,
    /// Share of scrapes on which the value moves at all.
    change_share: f64,
}

/// The moving part of a series.
#[derive(Debug, Clone, Copy)]
struct SeriesState {
    /// Counter units, a walk's position or a wandering value.
    units: f64,
    /// Value reported at the previous scrape, repeated when the series does not move.
    last: f64,
}

/// One host: its series and their state.
struct Host {
    specs: Vec<SeriesSpec>,
    states: Vec<SeriesState>,
    /// Where in each interval this host is scraped, in milliseconds.
    offset_ms: i64,
    rng: StdRng,
}

/// A deterministic node-exporter-like fleet.
pub struct Fleet {
    config: FleetConfig,
    hosts: Vec<Host>,
    /// Host indexes in the order of their offsets within an interval: the order of their scrapes.
    scrape_order: Vec<u32>,
}

impl Fleet {
    /// A fleet for `config`; fails if a parameter is out of range.
    pub fn new(config: FleetConfig) -> anyhow::Result<Fleet> {
        ensure!(config.hosts >= 1, "hosts must be at least 1, got {}", config.hosts);
        ensure!(config.interval_ms >= 1_000, "the scrape interval must be at least 1 s, got {} ms", config.interval_ms);
        ensure!(
            (0.0..=1.0).contains(&config.jitter_share),
            "the jitter share must be between 0 and 1, got {}",
            config.jitter_share
        );
        let hosts: Vec<Host> = (0..config.hosts).map(|host| Host::new(config, host)).collect();
        let mut scrape_order: Vec<u32> = (0..config.hosts).collect();
        scrape_order.sort_by_key(|&host| (hosts[host as usize].offset_ms, host));
        Ok(Fleet { config, hosts, scrape_order })
    }

    /// The configuration of this fleet.
    pub fn config(&self) -> FleetConfig {
        self.config
    }

    /// Series of one host (every host has as many).
    pub fn series_per_host(&self) -> usize {
        self.hosts[0].specs.len()
    }

    /// Series of the whole fleet.
    pub fn series(&self) -> u64 {
        self.hosts.iter().map(|host| host.specs.len() as u64).sum()
    }

    /// Labels of series `series` of host `host`, `__name__`, `job` and `instance` included, sorted by
    /// name as Prometheus sends them.
    pub fn labels(&self, host: u32, series: usize) -> Vec<(String, String)> {
        let mut labels = self.hosts[host as usize].specs[series].labels.clone();
        labels.push(("instance".to_owned(), instance(host)));
        labels.push(("job".to_owned(), "node".to_owned()));
        labels.sort();
        labels
    }

    /// Every scrape with a timestamp in `start_ms..end_ms`, in time order: `(host, timestamp_ms)`.
    /// Jitter is drawn from the seed, so the same range gives the same timestamps.
    pub fn scrapes(&self, start_ms: i64, end_ms: i64) -> impl Iterator<Item = (u32, i64)> + '_ {
        let interval = self.config.interval_ms;
        let first = start_ms.div_euclid(interval) - 1;
        let last = end_ms.div_euclid(interval) + 1;
        let mut jitter = StdRng::seed_from_u64(self.config.seed ^ 0x6a09_e667_f3bc_c908);
        (first..=last).flat_map(move |round| {
            let base = round * interval;
            let mut round_scrapes = Vec::with_capacity(self.scrape_order.len());
            for &host in &self.scrape_order {
                let mut ts = base + self.hosts[host as usize].offset_ms;
                if jitter.random_bool(self.config.jitter_share) {
                    ts += jitter.random_range(-JITTER_MS_MAX..=JITTER_MS_MAX);
                }
                if (start_ms..end_ms).contains(&ts) {
                    round_scrapes.push((host, ts));
                }
            }
            round_scrapes
        })
    }

    /// Scrapes host `host` at `timestamp_ms`: calls `sample(series, value)` for each of its series in
    /// order. Scrapes of one host must come in time order, as [`Fleet::scrapes`] gives them.
    pub fn scrape(&mut self, host: u32, timestamp_ms: i64, mut sample: impl FnMut(usize, f64)) {
        let interval_s = self.config.interval_ms as f64 / 1000.0;
        let host = &mut self.hosts[host as usize];
        for (index, (spec, state)) in host.specs.iter().zip(host.states.iter_mut()).enumerate() {
            if spec.change_share >= 1.0 || host.rng.random_bool(spec.change_share) {
                state.last = advance(spec.dynamics, state, interval_s, timestamp_ms, &mut host.rng);
            }
            sample(index, state.last);
        }
    }
}

/// The `instance` label of host `host`.
pub fn instance(host: u32) -> String {
    format!("host-{:03}:9100", host + 1)
}

/// Moves `state` one scrape on and returns the new value.
fn advance(dynamics: Dynamics, state: &mut SeriesState, interval_s: f64, timestamp_ms: i64, rng: &mut StdRng) -> f64 {
    match dynamics {
        Dynamics::Constant => state.last,
        Dynamics::Counter { per_s, multiplier, divisor } => {
            let expected = per_s * interval_s;
            // Rare events (errors, drops) happen on a few scrapes; busy counters grow unevenly.
            let increase = if expected < 1.0 {
                f64::from(u8::from(rng.random_bool(expected.max(0.0))))
            } else {
                (expected * rng.random_range(0.5..1.5)).round()
            };
            state.units += increase;
            state.units * multiplier / divisor
        }
        Dynamics::Walk { step, steps_max, min, max } => {
            let steps = f64::from(rng.random_range(1..=steps_max.max(1)));
            let moved = if rng.random_bool(0.5) { state.units + steps * step } else { state.units - steps * step };
            state.units = if moved < min || moved > max { state.units - (moved - state.units) } else { moved };
            state.units = state.units.clamp(min, max);
            state.units
        }
        Dynamics::Wander { mean, spread, scale } => {
            state.units += (mean - state.units) * 0.1 + spread * rng.random_range(-0.5..0.5);
            (state.units * scale).round() / scale
        }
        Dynamics::Clock => {
            let handled_ns = timestamp_ms * 1_000_000 + rng.random_range(100_000..3_000_000);
            handled_ns as f64 / 1e9
        }
        Dynamics::Duration { mean_s } => mean_s * rng.random_range(0.3..1.7),
    }
}

impl Host {
    fn new(config: FleetConfig, host: u32) -> Host {
        let mut rng = StdRng::seed_from_u64(config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(host));
        let offset_ms = rng.random_range(0..config.interval_ms);
        let mut builder = Builder::new(&mut rng, host);
        builder.node_exporter();
        let (specs, states) = builder.finish();
        Host { specs, states, offset_ms, rng }
    }
}

/// Collects the series of one host with their starting state.
struct Builder<'a> {
    rng: &'a mut StdRng,
    host: u32,
    /// How busy the host is, 0 to 1: scales every rate.
    busy: f64,
    uptime_s: f64,
    memory_bytes: f64,
    specs: Vec<SeriesSpec>,
    states: Vec<SeriesState>,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const PAGE: f64 = 4096.0;

impl<'a> Builder<'a> {
    fn new(rng: &'a mut StdRng, host: u32) -> Builder<'a> {
        // Most hosts of a fleet idle along and a few are busy.
        let busy = 0.05 + 0.9 * rng.random_range(0.0..1.0f64).powi(2);
        let uptime_s = rng.random_range(86_400.0..90.0 * 86_400.0f64).round();
        let memory_bytes = [32.0, 64.0, 128.0][rng.random_range(0..3)] * GIB;
        Builder { rng, host, busy, uptime_s, memory_bytes, specs: Vec::new(), states: Vec::new() }
    }

    fn finish(self) -> (Vec<SeriesSpec>, Vec<SeriesState>) {
        (self.specs, self.states)
    }

    fn push(&mut self, name: &str, labels: &[(&str, &str)], dynamics: Dynamics, start: f64, change_share: f64) {
        let mut all: Vec<(String, String)> = Vec::with_capacity(labels.len() + 1);
        all.push(("__name__".to_owned(), name.to_owned()));
        all.extend(labels.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
        all.sort();
        let last = match dynamics {
            Dynamics::Counter { multiplier, divisor, .. } => start * multiplier / divisor,
            Dynamics::Wander { scale, .. } => (start * scale).round() / scale,
            _ => start,
        };
        self.specs.push(SeriesSpec { labels: all, dynamics, change_share });
        self.states.push(SeriesState { units: start, last });
    }

    fn constant(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, labels, Dynamics::Constant, value, 0.0);
    }

    /// A counter of whole units, started where `per_s` over the host's uptime would have taken it.
    fn counter_scaled(&mut self, name: &str, labels: &[(&str, &str)], per_s: f64, multiplier: f64, divisor: f64) {
        if per_s <= 0.0 {
            self.constant(name, labels, 0.0);
            return;
        }
        let start = (per_s * self.uptime_s * self.rng.random_range(0.8..1.2)).round();
        self.push(name, labels, Dynamics::Counter { per_s, multiplier, divisor }, start, 1.0);
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)], per_s: f64) {
        self.counter_scaled(name, labels, per_s, 1.0, 1.0);
    }

    /// A counter of seconds kept in units of `1 / divisor` s (100 for CPU ticks, 1,000 for
    /// milliseconds, 10^9 for nanoseconds); `share` is the seconds it grows by per second.
    fn seconds(&mut self, name: &str, labels: &[(&str, &str)], share: f64, divisor: f64) {
        self.counter_scaled(name, labels, share * divisor, 1.0, divisor);
    }

    fn walk(&mut self, name: &str, labels: &[(&str, &str)], start: f64, step: f64, steps_max: u32, change_share: f64) {
        let start = (start / step).round() * step;
        // Half to one and a half times the start, whichever its sign: a negative start (a gauge
        // whose level came out below zero) would otherwise give a minimum above the maximum.
        let (low, high) = ((start * 0.5).min(start * 1.5), (start * 0.5).max(start * 1.5));
        let (min, max) = ((low / step).floor() * step, (high / step).ceil() * step + step);
        self.push(name, labels, Dynamics::Walk { step, steps_max, min, max }, start, change_share);
    }

    fn wander(&mut self, name: &str, labels: &[(&str, &str)], mean: f64, spread: f64, scale: f64) {
        self.push(name, labels, Dynamics::Wander { mean, spread, scale }, mean, 1.0);
    }

    fn duration(&mut self, name: &str, labels: &[(&str, &str)], mean_s: f64, change_share: f64) {
        let start = mean_s * self.rng.random_range(0.3..1.7);
        self.push(name, labels, Dynamics::Duration { mean_s }, start, change_share);
    }

    fn node_exporter(&mut self) {
        self.cpu();
        self.memory();
        self.filesystems();
        self.network();
        self.disks();
        self.kernel();
        self.netstat();
        self.hardware();
        self.exporter();
    }

    fn cpu(&mut self) {
        let busy = self.busy;
        let modes = [
            ("idle", 1.0 - 0.62 * busy),
            ("iowait", 0.01 * busy),
            ("irq", 0.0),
            ("nice", 0.0005),
            ("softirq", 0.01 * busy),
            ("steal", 0.002),
            ("system", 0.1 * busy),
            ("user", 0.5 * busy),
        ];
        for cpu in 0..CPUS {
            let cpu = cpu.to_string();
            let cpu = cpu.as_str();
            for (mode, share) in modes {
                // Counted in USER_HZ ticks and divided by 100 by the exporter.
                self.seconds("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)], share, 100.0);
            }
            for mode in ["nice", "user"] {
                self.constant("node_cpu_guest_seconds_total", &[("cpu", cpu), ("mode", mode)], 0.0);
            }
            self.seconds("node_schedstat_running_seconds_total", &[("cpu", cpu)], 0.6 * busy, 1e9);
            self.seconds("node_schedstat_waiting_seconds_total", &[("cpu", cpu)], 0.04 * busy, 1e9);
            self.counter("node_schedstat_timeslices_total", &[("cpu", cpu)], 20.0 + 300.0 * busy);
            self.counter("node_softnet_processed_total", &[("cpu", cpu)], 5.0 + 800.0 * busy);
            self.constant("node_softnet_dropped_total", &[("cpu", cpu)], 0.0);
            self.counter("node_softnet_times_squeezed_total", &[("cpu", cpu)], 0.002 * busy);
            let frequency = (self.rng.random_range(1.2e9..3.0e9f64) / 1000.0).round() * 1000.0;
            self.walk("node_cpu_scaling_frequency_hertz", &[("cpu", cpu)], frequency, 1000.0, 400_000, 0.9);
            self.constant("node_cpu_scaling_frequency_max_hertz", &[("cpu", cpu)], 3.5e9);
            self.constant("node_cpu_scaling_frequency_min_hertz", &[("cpu", cpu)], 8e8);
        }
    }

    fn memory(&mut self) {
        let total = self.memory_bytes - (self.rng.random_range(100_000.0..400_000.0f64)).round() * 1024.0;
        let used = 0.2 + 0.6 * self.busy;
        // (field, share of memory, changes): /proc/meminfo in kB, multiplied to bytes by the exporter.
        let moving: [(&str, f64, f64); 24] = [
            ("MemFree", 1.0 - used - 0.25, 0.95),
            ("MemAvailable", 1.0 - used, 0.95),
            ("Buffers", 0.01, 0.6),
            ("Cached", 0.25, 0.9),
            ("Active", used * 0.6, 0.9),
            ("Inactive", used * 0.3, 0.9),
            ("Active_anon", used * 0.4, 0.9),
            ("Inactive_anon", used * 0.05, 0.5),
            ("Active_file", used * 0.2, 0.9),
            ("Inactive_file", used * 0.25, 0.9),
            ("Dirty", 0.0003, 0.9),
            ("AnonPages", used * 0.45, 0.9),
            ("Mapped", 0.02, 0.5),
            ("Shmem", 0.005, 0.3),
            ("KReclaimable", 0.02, 0.6),
            ("Slab", 0.03, 0.7),
            ("SReclaimable", 0.02, 0.6),
            ("SUnreclaim", 0.01, 0.6),
            ("KernelStack", 0.0002, 0.5),
            ("PageTables", 0.002, 0.6),
            ("Committed_AS", used * 0.9, 0.9),
            ("VmallocUsed", 0.0005, 0.2),
            ("AnonHugePages", used * 0.1, 0.05),
            ("Writeback", 0.00001, 0.05),
        ];
        for (field, share, changes) in moving {
            let name = format!("node_memory_{field}_bytes");
            let steps_max = ((total * share / PAGE) / 200.0).clamp(1.0, 20_000.0) as u32;
            self.walk(&name, &[], total * share, PAGE, steps_max, changes);
        }
        let swap = if self.rng.random_bool(0.5) { 2.0 * GIB } else { 0.0 };
        let fixed: [(&str, f64); 25] = [
            ("MemTotal", total),
            ("SwapTotal", swap),
            ("SwapFree", swap),
            ("SwapCached", 0.0),
            ("Unevictable", 32_768.0),
            ("Mlocked", 32_768.0),
            ("NFS_Unstable", 0.0),
            ("Bounce", 0.0),
            ("WritebackTmp", 0.0),
            ("CommitLimit", total / 2.0 + swap),
            ("VmallocTotal", 35_184_372_087_808.0),
            ("VmallocChunk", 0.0),
            ("Percpu", 20_185_088.0),
            ("HardwareCorrupted", 0.0),
            ("ShmemHugePages", 0.0),
            ("ShmemPmdMapped", 0.0),
            ("FileHugePages", 0.0),
            ("FilePmdMapped", 0.0),
            ("Hugepagesize", 2_097_152.0),
            ("Hugetlb", 0.0),
            ("DirectMap4k", 446_464.0 * 1024.0),
            ("DirectMap2M", 14_000_128.0 * 1024.0),
            ("DirectMap1G", (total / GIB).floor() * GIB),
            ("Zswap", 0.0),
            ("Zswapped", 0.0),
        ];
        for (field, value) in fixed {
            self.constant(&format!("node_memory_{field}_bytes"), &[], value);
        }
        for field in ["HugePages_Free", "HugePages_Rsvd", "HugePages_Surp", "HugePages_Total"] {
            self.constant(&format!("node_memory_{field}"), &[], 0.0);
        }
    }

    fn filesystems(&mut self) {
        let mounts = [
            ("/dev/nvme0n1p2", "ext4", "/", 100.0 * GIB, 0.8),
            ("/dev/nvme0n1p1", "vfat", "/boot/efi", 0.5 * GIB, 0.0),
            ("/dev/nvme0n1p3", "ext4", "/boot", 1.0 * GIB, 0.0),
            ("/dev/mapper/vg0-var", "xfs", "/var", 200.0 * GIB, 0.95),
            ("/dev/mapper/vg0-home", "ext4", "/home", 50.0 * GIB, 0.1),
            ("/dev/sdb1", "xfs", "/data", 2000.0 * GIB, 0.9),
            ("tmpfs", "tmpfs", "/run", 3.2 * GIB, 0.3),
            ("tmpfs", "tmpfs", "/run/lock", 0.005 * GIB, 0.0),
            ("tmpfs", "tmpfs", "/run/user/1000", 3.2 * GIB, 0.01),
            ("tmpfs", "tmpfs", "/dev/shm", 16.0 * GIB, 0.05),
        ];
        for (device, fstype, mountpoint, size, changes) in mounts {
            let labels = [("device", device), ("fstype", fstype), ("mountpoint", mountpoint)];
            let used = self.rng.random_range(0.05..0.8f64);
            let avail = (size * (1.0 - used) / PAGE).round() * PAGE;
            let reserved = if fstype == "ext4" { (size * 0.05 / PAGE).round() * PAGE } else { 0.0 };
            let steps_max = if changes > 0.5 { 5_000 } else { 50 };
            let files = (size / 16_384.0).round();
            self.constant("node_filesystem_size_bytes", &labels, (size / PAGE).round() * PAGE);
            if changes > 0.0 {
                self.walk("node_filesystem_avail_bytes", &labels, avail, PAGE, steps_max, changes);
                self.walk("node_filesystem_free_bytes", &labels, avail + reserved, PAGE, steps_max, changes);
                self.walk("node_filesystem_files_free", &labels, (files * 0.9).round(), 1.0, 40, changes * 0.5);
            } else {
                self.constant("node_filesystem_avail_bytes", &labels, avail);
                self.constant("node_filesystem_free_bytes", &labels, avail + reserved);
                self.constant("node_filesystem_files_free", &labels, (files * 0.9).round());
            }
            self.constant("node_filesystem_files", &labels, files);
            self.constant("node_filesystem_readonly", &labels, 0.0);
            self.constant("node_filesystem_device_error", &labels, 0.0);
        }
    }

    fn network(&mut self) {
        let busy = self.busy;
        let devices = [
            ("eth0", 4e6 * busy + 2e4, 1.25e9, 1500.0),
            ("eth1", 8e5 * busy + 5e3, 1.25e9, 1500.0),
            ("lo", 1e5 * busy + 1e3, 0.0, 65536.0),
            ("docker0", 2e5 * busy, 0.0, 1500.0),
            ("veth3f2a1b7", 2e5 * busy, 1.25e9, 1500.0),
        ];
        for (index, (device, bytes_per_s, speed, mtu)) in devices.into_iter().enumerate() {
            let labels = [("device", device)];
            for direction in ["receive", "transmit"] {
                let bytes_per_s = if direction == "receive" { bytes_per_s } else { bytes_per_s * 0.6 };
                let packet_bytes = self.rng.random_range(300.0..1200.0);
                self.counter(&format!("node_network_{direction}_bytes_total"), &labels, bytes_per_s);
                self.counter(&format!("node_network_{direction}_packets_total"), &labels, bytes_per_s / packet_bytes);
                self.counter(&format!("node_network_{direction}_drop_total"), &labels, 0.002 * busy);
                for counter in ["errs", "fifo", "compressed"] {
                    self.constant(&format!("node_network_{direction}_{counter}_total"), &labels, 0.0);
                }
            }
            self.counter("node_network_receive_multicast_total", &labels, 0.05);
            self.constant("node_network_receive_frame_total", &labels, 0.0);
            self.constant("node_network_transmit_colls_total", &labels, 0.0);
            self.constant("node_network_transmit_carrier_total", &labels, 0.0);
            let index_value = (index + 1) as f64;
            let fixed: [(&str, f64); 16] = [
                ("up", if device == "lo" { 0.0 } else { 1.0 }),
                ("mtu_bytes", mtu),
                ("speed_bytes", speed),
                ("transmit_queue_length", 1000.0),
                ("flags", 4099.0),
                ("iface_id", index_value),
                ("iface_link", index_value),
                ("address_assign_type", 0.0),
                ("carrier", 1.0),
                ("dormant", 0.0),
                ("protocol_type", if device == "lo" { 772.0 } else { 1.0 }),
                ("device_id", 0.0),
                ("net_dev_group", 0.0),
                ("carrier_changes_total", 2.0),
                ("carrier_up_changes_total", 1.0),
                ("carrier_down_changes_total", 1.0),
            ];
            for (name, value) in fixed {
                self.constant(&format!("node_network_{name}"), &labels, value);
            }
            let address =
                format!("52:54:00:{:02x}:{:02x}:{:02x}", index, self.rng.random::<u8>(), self.rng.random::<u8>());
            self.constant(
                "node_network_info",
                &[
                    ("address", &address),
                    ("broadcast", "ff:ff:ff:ff:ff:ff"),
                    ("device", device),
                    ("duplex", "full"),
                    ("operstate", "up"),
                ],
                1.0,
            );
        }
    }

    fn disks(&mut self) {
        let busy = self.busy;
        let disks = [
            ("nvme0n1", "259", "0", 1.0),
            ("nvme1n1", "259", "1", 0.6),
            ("sda", "8", "0", 0.3),
            ("dm-0", "253", "0", 0.5),
            ("dm-1", "253", "1", 0.4),
        ];
        for (device, major, minor, share) in disks {
            let labels = [("device", device)];
            let reads_per_s = 30.0 * busy * share + 0.1;
            let writes_per_s = 60.0 * busy * share + 0.5;
            self.counter("node_disk_reads_completed_total", &labels, reads_per_s);
            self.counter("node_disk_reads_merged_total", &labels, reads_per_s * 0.1);
            // Sectors of 512 bytes, multiplied by the exporter.
            self.counter_scaled("node_disk_read_bytes_total", &labels, reads_per_s * 40.0, 512.0, 1.0);
            self.seconds("node_disk_read_time_seconds_total", &labels, reads_per_s * 0.0004, 1000.0);
            self.counter("node_disk_writes_completed_total", &labels, writes_per_s);
            self.counter("node_disk_writes_merged_total", &labels, writes_per_s * 0.3);
            self.counter_scaled("node_disk_written_bytes_total", &labels, writes_per_s * 24.0, 512.0, 1.0);
            self.seconds("node_disk_write_time_seconds_total", &labels, writes_per_s * 0.0009, 1000.0);
            self.walk("node_disk_io_now", &labels, 1.0, 1.0, 2, 0.2 * busy);
            self.seconds("node_disk_io_time_seconds_total", &labels, 0.05 * busy * share, 1000.0);
            self.seconds("node_disk_io_time_weighted_seconds_total", &labels, 0.08 * busy * share, 1000.0);
            self.counter("node_disk_discards_completed_total", &labels, 0.001);
            self.constant("node_disk_discards_merged_total", &labels, 0.0);
            self.counter("node_disk_discarded_sectors_total", &labels, 0.001);
            self.constant("node_disk_discard_time_seconds_total", &labels, 0.0);
            self.counter("node_disk_flush_requests_total", &labels, writes_per_s * 0.05);
            self.seconds("node_disk_flush_requests_time_seconds_total", &labels, writes_per_s * 0.00001, 1000.0);
            let serial = format!("S4EWNX0R{:06}", self.rng.random_range(0..1_000_000));
            self.constant(
                "node_disk_info",
                &[
                    ("device", device),
                    ("major", major),
                    ("minor", minor),
                    ("model", "Samsung SSD 980 PRO 1TB"),
                    ("revision", "5B2QGXA7"),
                    ("serial", &serial),
                ],
                1.0,
            );
        }
    }

    fn kernel(&mut self) {
        let busy = self.busy;
        let cpus = CPUS as f64;
        self.wander("node_load1", &[], cpus * 0.7 * busy, cpus * 0.1 * busy + 0.05, 100.0);
        self.wander("node_load5", &[], cpus * 0.7 * busy, cpus * 0.03 * busy + 0.02, 100.0);
        self.wander("node_load15", &[], cpus * 0.7 * busy, cpus * 0.01 * busy + 0.01, 100.0);
        self.counter("node_vmstat_pgpgin", &[], 2000.0 * busy);
        self.counter("node_vmstat_pgpgout", &[], 6000.0 * busy);
        self.constant("node_vmstat_pswpin", &[], 0.0);
        self.constant("node_vmstat_pswpout", &[], 0.0);
        self.counter("node_vmstat_pgfault", &[], 30_000.0 * busy + 200.0);
        self.counter("node_vmstat_pgmajfault", &[], 0.2 * busy);
        self.constant("node_vmstat_oom_kill", &[], 0.0);
        for (name, share) in [
            ("cpu_waiting", 0.02),
            ("io_stalled", 0.004),
            ("io_waiting", 0.006),
            ("memory_stalled", 0.0),
            ("memory_waiting", 0.0001),
        ] {
            // Microseconds in /proc/pressure.
            self.seconds(&format!("node_pressure_{name}_seconds_total"), &[], share * busy, 1e6);
        }
        let boot = (1.7e9 - self.uptime_s).round();
        self.constant("node_boot_time_seconds", &[], boot);
        self.counter("node_context_switches_total", &[], 40_000.0 * busy + 800.0);
        self.counter("node_forks_total", &[], 30.0 * busy + 0.5);
        self.counter("node_intr_total", &[], 25_000.0 * busy + 600.0);
        self.walk("node_procs_blocked", &[], 1.0, 1.0, 1, 0.1 * busy);
        self.walk("node_procs_running", &[], (cpus * busy).max(2.0), 1.0, 2, 0.8);
        self.push("node_time_seconds", &[], Dynamics::Clock, 0.0, 1.0);
        self.constant("node_entropy_available_bits", &[], 256.0);
        self.constant("node_entropy_pool_size_bits", &[], 256.0);
        self.walk("node_filefd_allocated", &[], 3000.0 + 20_000.0 * busy, 32.0, 8, 0.8);
        self.constant("node_filefd_maximum", &[], 9.223_372_036_854_776e18);
        self.walk("node_nf_conntrack_entries", &[], 200.0 + 5000.0 * busy, 1.0, 50, 0.9);
        self.constant("node_nf_conntrack_entries_limit", &[], 262_144.0);
        let sockets: [(&str, f64, f64); 20] = [
            ("FRAG6_inuse", 0.0, 0.0),
            ("FRAG6_memory", 0.0, 0.0),
            ("FRAG_inuse", 0.0, 0.0),
            ("FRAG_memory", 0.0, 0.0),
            ("RAW6_inuse", 1.0, 0.0),
            ("RAW_inuse", 0.0, 0.0),
            ("TCP6_inuse", 20.0, 0.3),
            ("TCP_alloc", 400.0, 0.9),
            ("TCP_inuse", 150.0, 0.8),
            ("TCP_mem", 60.0, 0.9),
            ("TCP_mem_bytes", 60.0 * PAGE, 0.9),
            ("TCP_orphan", 0.0, 0.05),
            ("TCP_tw", 80.0, 0.9),
            ("UDP6_inuse", 2.0, 0.0),
            ("UDPLITE6_inuse", 0.0, 0.0),
            ("UDPLITE_inuse", 0.0, 0.0),
            ("UDP_inuse", 6.0, 0.02),
            ("UDP_mem", 4.0, 0.3),
            ("UDP_mem_bytes", 4.0 * PAGE, 0.3),
            ("sockets_used", 900.0, 0.9),
        ];
        for (name, level, changes) in sockets {
            let name = format!("node_sockstat_{name}");
            let step = if name.ends_with("_bytes") { PAGE } else { 1.0 };
            if changes > 0.0 {
                self.walk(&name, &[], level * (0.5 + busy), step, 5, changes);
            } else {
                self.constant(&name, &[], level);
            }
        }
        self.constant("node_timex_estimated_error_seconds", &[], 0.0);
        self.wander("node_timex_frequency_adjustment_ratio", &[], 1.000_012, 1e-7, 1e12);
        self.constant("node_timex_loop_time_constant", &[], 7.0);
        self.wander("node_timex_maxerror_seconds", &[], 0.012, 0.004, 1e6);
        self.wander("node_timex_offset_seconds", &[], 0.0, 2e-5, 1e9);
        for name in [
            "pps_calibration_total",
            "pps_error_total",
            "pps_frequency_hertz",
            "pps_jitter_seconds",
            "pps_jitter_total",
            "pps_shift_seconds",
            "pps_stability_exceeded_total",
            "pps_stability_hertz",
        ] {
            self.constant(&format!("node_timex_{name}"), &[], 0.0);
        }
        self.constant("node_timex_status", &[], 8193.0);
        self.constant("node_timex_sync_status", &[], 1.0);
        self.constant("node_timex_tai_offset_seconds", &[], 37.0);
        self.constant("node_timex_tick_seconds", &[], 0.01);
    }

    fn netstat(&mut self) {
        let busy = self.busy;
        let counters: [(&str, f64); 33] = [
            ("Icmp6_InErrors", 0.0),
            ("Icmp6_InMsgs", 0.3),
            ("Icmp6_OutMsgs", 0.3),
            ("Icmp_InErrors", 0.001),
            ("Icmp_InMsgs", 0.5),
            ("Icmp_OutMsgs", 0.5),
            ("Ip6_InOctets", 200.0),
            ("Ip6_OutOctets", 200.0),
            ("IpExt_InOctets", 4e6 * busy + 2e4),
            ("IpExt_OutOctets", 2.4e6 * busy + 1e4),
            ("TcpExt_ListenDrops", 0.0),
            ("TcpExt_ListenOverflows", 0.0),
            ("TcpExt_SyncookiesFailed", 0.0),
            ("TcpExt_SyncookiesRecv", 0.0),
            ("TcpExt_SyncookiesSent", 0.0),
            ("TcpExt_TCPSynRetrans", 0.01 * busy),
            ("TcpExt_TCPTimeouts", 0.05 * busy),
            ("Tcp_ActiveOpens", 20.0 * busy + 0.2),
            ("Tcp_InErrs", 0.001),
            ("Tcp_InSegs", 3000.0 * busy + 20.0),
            ("Tcp_OutRsts", 2.0 * busy),
            ("Tcp_OutSegs", 2800.0 * busy + 20.0),
            ("Tcp_PassiveOpens", 15.0 * busy + 0.1),
            ("Tcp_RetransSegs", 0.5 * busy),
            ("Udp6_InDatagrams", 0.1),
            ("Udp6_InErrors", 0.0),
            ("Udp6_NoPorts", 0.0),
            ("Udp6_OutDatagrams", 0.1),
            ("Udp_InDatagrams", 20.0 * busy + 1.0),
            ("Udp_InErrors", 0.0),
            ("Udp_NoPorts", 0.02),
            ("Udp_OutDatagrams", 20.0 * busy + 1.0),
            ("Udp_RcvbufErrors", 0.0),
        ];
        for (name, per_s) in counters {
            self.counter(&format!("node_netstat_{name}"), &[], per_s);
        }
        for name in
            ["Udp6_RcvbufErrors", "Udp6_SndbufErrors", "UdpLite6_InErrors", "UdpLite_InErrors", "Udp_SndbufErrors"]
        {
            self.constant(&format!("node_netstat_{name}"), &[], 0.0);
        }
        self.constant("node_netstat_Ip_Forwarding", &[], 1.0);
        self.walk("node_netstat_Tcp_CurrEstab", &[], 40.0 + 300.0 * busy, 1.0, 6, 0.8);
        for (ip, queue) in [("v4", "rx"), ("v4", "tx"), ("v6", "rx"), ("v6", "tx")] {
            self.constant("node_udp_queues", &[("ip", ip), ("queue", queue)], 0.0);
        }
        for device in ["eth0", "eth1", "docker0"] {
            self.walk("node_arp_entries", &[("device", device)], 4.0, 1.0, 1, 0.02);
        }
    }

    fn hardware(&mut self) {
        let busy = self.busy;
        let chip = "platform_coretemp_0";
        for sensor in 1..=CPUS / 2 + 1 {
            let sensor = format!("temp{sensor}");
            let labels = [("chip", chip), ("sensor", sensor.as_str())];
            self.wander("node_hwmon_temp_celsius", &labels, 40.0 + 30.0 * busy, 4.0, 1.0);
            self.constant("node_hwmon_temp_crit_alarm_celsius", &labels, 0.0);
            self.constant("node_hwmon_temp_crit_celsius", &labels, 100.0);
            self.constant("node_hwmon_temp_max_celsius", &labels, 84.0);
        }
        self.constant("node_hwmon_chip_names", &[("chip", chip), ("chip_name", "coretemp")], 1.0);
        for (clocksource, current) in [("tsc", true), ("hpet", false), ("acpi_pm", false)] {
            let labels = [("clocksource", clocksource), ("device", "0")];
            self.constant("node_time_clocksource_available_info", &labels, 1.0);
            if current {
                self.constant("node_time_clocksource_current_info", &labels, 1.0);
            }
        }
        self.constant("node_time_zone_offset_seconds", &[("time_zone", "UTC")], 0.0);
        self.constant("node_selinux_enabled", &[], 0.0);
        self.constant("node_textfile_scrape_error", &[], 0.0);
        self.constant(
            "node_dmi_info",
            &[
                ("bios_vendor", "Dell Inc."),
                ("bios_version", "2.14.2"),
                ("product_name", "PowerEdge R650"),
                ("system_vendor", "Dell Inc."),
            ],
            1.0,
        );
        let release = "6.1.0-18-amd64";
        let nodename = instance(self.host).replace(":9100", "");
        self.constant(
            "node_uname_info",
            &[
                ("domainname", "(none)"),
                ("machine", "x86_64"),
                ("nodename", &nodename),
                ("release", release),
                ("sysname", "Linux"),
                ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"),
            ],
            1.0,
        );
        self.constant(
            "node_os_info",
            &[
                ("id", "debian"),
                ("name", "Debian GNU/Linux"),
                ("pretty_name", "Debian GNU/Linux 12 (bookworm)"),
                ("version", "12 (bookworm)"),
                ("version_codename", "bookworm"),
                ("version_id", "12"),
            ],
            1.0,
        );
        self.constant("node_os_version", &[("id", "debian"), ("name", "Debian GNU/Linux")], 12.0);
    }

    fn exporter(&mut self) {
        let busy = self.busy;
        self.constant(
            "node_exporter_build_info",
            &[
                ("branch", "debian/sid"),
                ("goarch", "amd64"),
                ("goos", "linux"),
                ("goversion", "go1.19.8"),
                ("revision", "1.5.0-1+b6"),
                ("tags", "unknown"),
                ("version", "1.5.0"),
            ],
            1.0,
        );
        let collectors = [
            "arp",
            "bcache",
            "bonding",
            "btrfs",
            "conntrack",
            "cpu",
            "cpufreq",
            "diskstats",
            "dmi",
            "edac",
            "entropy",
            "fibrechannel",
            "filefd",
            "filesystem",
            "hwmon",
            "infiniband",
            "ipvs",
            "loadavg",
            "mdadm",
            "meminfo",
            "netclass",
            "netdev",
            "netstat",
            "nfs",
            "nfsd",
            "nvme",
            "os",
            "powersupplyclass",
            "pressure",
            "rapl",
            "schedstat",
            "selinux",
            "sockstat",
            "softnet",
            "stat",
            "tapestats",
            "textfile",
            "thermal_zone",
            "time",
            "timex",
            "udp_queues",
            "uname",
            "vmstat",
            "xfs",
            "zfs",
        ];
        for collector in collectors {
            let labels = [("collector", collector)];
            // Collectors for hardware the host lacks fail on every scrape.
            let success = if matches!(collector, "rapl" | "fibrechannel" | "infiniband") { 0.0 } else { 1.0 };
            self.constant("node_scrape_collector_success", &labels, success);
            let mean_s = match collector {
                "filesystem" | "netclass" | "diskstats" | "cpu" => 0.004,
                "hwmon" | "thermal_zone" | "cpufreq" => 0.002,
                _ => 0.0002,
            };
            self.duration("node_scrape_collector_duration_seconds", &labels, mean_s, 1.0);
        }
        for quantile in ["0", "0.25", "0.5", "0.75", "1"] {
            let mean_s = if quantile == "1" { 0.002 } else { 0.00004 };
            self.duration("go_gc_duration_seconds", &[("quantile", quantile)], mean_s, 0.3);
        }
        self.seconds("go_gc_duration_seconds_sum", &[], 0.00001, 1e9);
        self.counter("go_gc_duration_seconds_count", &[], 0.05);
        self.walk("go_goroutines", &[], 9.0, 1.0, 1, 0.1);
        self.walk("go_threads", &[], 12.0, 1.0, 1, 0.005);
        self.constant("go_info", &[("version", "go1.19.8")], 1.0);
        let moving: [(&str, f64, f64); 12] = [
            ("alloc_bytes", 4e6, 1.0),
            ("heap_alloc_bytes", 4e6, 1.0),
            ("heap_idle_bytes", 6e6, 0.4),
            ("heap_inuse_bytes", 6e6, 0.6),
            ("heap_objects", 30_000.0, 1.0),
            ("heap_released_bytes", 3e6, 0.1),
            ("mcache_inuse_bytes", 14_400.0, 0.01),
            ("mspan_inuse_bytes", 140_000.0, 0.3),
            ("next_gc_bytes", 8e6, 0.05),
            ("other_sys_bytes", 1.2e6, 0.2),
            ("stack_inuse_bytes", 800_000.0, 0.05),
            ("buck_hash_sys_bytes", 1.5e6, 0.05),
        ];
        for (name, level, changes) in moving {
            let step = if name.ends_with("objects") { 1.0 } else { 8.0 };
            self.walk(&format!("go_memstats_{name}"), &[], level, step, 20_000, changes);
        }
        self.counter("go_memstats_alloc_bytes_total", &[], 300_000.0);
        self.counter("go_memstats_mallocs_total", &[], 3000.0);
        self.counter("go_memstats_frees_total", &[], 2990.0);
        self.constant("go_memstats_lookups_total", &[], 0.0);
        for (name, value) in [
            ("gc_sys_bytes", 8_520_000.0),
            ("heap_sys_bytes", 11_763_712.0),
            ("mcache_sys_bytes", 15_600.0),
            ("mspan_sys_bytes", 195_840.0),
            ("stack_sys_bytes", 819_200.0),
            ("sys_bytes", 24_810_504.0),
        ] {
            self.walk(&format!("go_memstats_{name}"), &[], value, 4096.0, 4, 0.01);
        }
        self.push("go_memstats_last_gc_time_seconds", &[], Dynamics::Clock, 1.7e9, 0.3);
        self.seconds("process_cpu_seconds_total", &[], 0.004 + 0.01 * busy, 100.0);
        self.constant("process_max_fds", &[], 1_048_576.0);
        self.walk("process_open_fds", &[], 10.0, 1.0, 1, 0.05);
        self.walk("process_resident_memory_bytes", &[], 22e6, PAGE, 200, 0.8);
        let start_time = ((1.7e9 - self.uptime_s) * 100.0 + 523.0).round() / 100.0;
        self.constant("process_start_time_seconds", &[], start_time);
        self.walk("process_virtual_memory_bytes", &[], 1.3e9, PAGE, 100, 0.05);
        self.constant("process_virtual_memory_max_bytes", &[], 1.844_674_407_370_955_2e19);
        for cause in ["encoding", "gathering"] {
            self.constant("promhttp_metric_handler_errors_total", &[("cause", cause)], 0.0);
        }
        self.constant("promhttp_metric_handler_requests_in_flight", &[], 1.0);
        for code in ["200", "500", "503"] {
            // One scrape per interval: the 200s grow by one every time.
            let per_s = if code == "200" { 1.0 / 15.0 } else { 0.0 };
            self.counter("promhttp_metric_handler_requests_total", &[("code", code)], per_s);
        }
        // The series Prometheus adds to every scrape.
        let scraped = (self.specs.len()) as f64;
        self.constant("up", &[], 1.0);
        self.duration("scrape_duration_seconds", &[], 0.03, 1.0);
        self.constant("scrape_samples_scraped", &[], scraped);
        self.constant("scrape_samples_post_metric_relabeling", &[], scraped);
        self.constant("scrape_series_added", &[], 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL_MS: i64 = 15_000;

    fn fleet(hosts: u32, seed: u64) -> Fleet {
        Fleet::new(FleetConfig { seed, hosts, interval_ms: INTERVAL_MS, jitter_share: 0.25 }).unwrap()
    }

    fn series_values(fleet: &mut Fleet, host: u32, scrapes: usize) -> Vec<Vec<f64>> {
        let per_host = fleet.series_per_host();
        let mut values = vec![Vec::new(); per_host];
        for round in 0..scrapes {
            fleet.scrape(host, round as i64 * INTERVAL_MS, |series, value| values[series].push(value));
        }
        values
    }

    #[test]
    fn a_host_has_about_a_thousand_node_exporter_series() {
        let fleet = fleet(3, 1);
        let per_host = fleet.series_per_host();
        assert!((900..=1100).contains(&per_host), "{per_host} series per host");
        assert_eq!(fleet.series(), 3 * per_host as u64);
        let labels = fleet.labels(2, 0);
        assert_eq!(labels[0], ("__name__".to_owned(), "node_cpu_seconds_total".to_owned()));
        assert!(labels.is_sorted());
        assert!(labels.contains(&("instance".to_owned(), "host-003:9100".to_owned())));
        assert!(labels.contains(&("job".to_owned(), "node".to_owned())));
        // No two series of a host share a label set.
        let mut all: Vec<_> = (0..per_host).map(|series| fleet.labels(0, series)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), per_host);
    }

    /// At the seed's cardinality (1,000 hosts, about a million series) some gauges start below
    /// zero; their walks must still have a minimum below their maximum.
    #[test]
    fn a_thousand_hosts_scrape_without_a_walk_out_of_bounds() {
        let mut fleet = fleet(1000, 1);
        let mut values = 0u64;
        for host in 0..1000 {
            for round in 0..2 {
                fleet.scrape(host, round * INTERVAL_MS, |_, v| {
                    assert!(v.is_finite());
                    values += 1;
                });
            }
        }
        assert_eq!(values, 2 * fleet.series());
    }

    /// A fleet of N hosts is hosts 0 to N - 1, each built from the seed and its number alone: every
    /// host up to 2,000 (two million series) has walks whose minimum is under their maximum and
    /// scrapes to finite values, so any host count from 1 to 2,000 works.
    #[test]
    fn every_host_up_to_two_thousand_builds_and_scrapes() {
        let config = FleetConfig { seed: 1, hosts: 2000, interval_ms: INTERVAL_MS, jitter_share: 0.25 };
        for host in 0..config.hosts {
            let mut h = Host::new(config, host);
            for spec in &h.specs {
                if let Dynamics::Walk { min, max, .. } = spec.dynamics {
                    assert!(min < max, "host {host}: walk of {:?} from {min} to {max}", spec.labels);
                }
            }
            for (state, spec) in h.states.iter_mut().zip(&h.specs) {
                let v = advance(spec.dynamics, state, 15.0, INTERVAL_MS, &mut h.rng);
                assert!(v.is_finite(), "host {host}: {:?} scraped to {v}", spec.labels);
            }
        }
        assert_eq!(fleet(1, 1).series(), fleet(1, 1).series_per_host() as u64);
    }

    #[test]
    fn the_seed_decides_everything() {
        let (mut a, mut b, mut c) = (fleet(2, 7), fleet(2, 7), fleet(2, 8));
        assert_eq!(series_values(&mut a, 1, 5), series_values(&mut b, 1, 5));
        assert_ne!(series_values(&mut a, 1, 5), series_values(&mut c, 1, 5));
        let scrapes = |fleet: &Fleet| fleet.scrapes(0, 600_000).collect::<Vec<_>>();
        assert_eq!(scrapes(&a), scrapes(&b));
    }

    #[test]
    fn counters_never_decrease_and_constants_never_move() {
        let mut fleet = fleet(1, 3);
        let values = series_values(&mut fleet, 0, 40);
        let host = &fleet.hosts[0];
        let (mut counters, mut constants, mut moving) = (0, 0, 0);
        for (spec, values) in host.specs.iter().zip(&values) {
            match spec.dynamics {
                Dynamics::Counter { .. } => {
                    counters += 1;
                    assert!(values.is_sorted(), "{:?} decreased: {values:?}", spec.labels);
                }
                Dynamics::Constant => {
                    constants += 1;
                    assert!(values.iter().all(|v| v.to_bits() == values[0].to_bits()), "{:?} moved", spec.labels);
                }
                _ => {}
            }
            if values.iter().any(|v| v.to_bits() != values[0].to_bits()) {
                moving += 1;
            }
        }
        // A realistic mix: plenty of each kind.
        assert!(
            counters > 300 && constants > 200 && moving > 400,
            "{counters} counters, {constants} constants, {moving} moving"
        );
    }

    #[test]
    fn cpu_seconds_are_ticks_with_two_decimals() {
        let mut fleet = fleet(1, 5);
        let values = series_values(&mut fleet, 0, 10);
        for value in &values[0] {
            let text = value.to_string();
            let decimals = text.split_once('.').map_or(0, |(_, fraction)| fraction.len());
            assert!(decimals <= 2, "{text} has more than two decimals");
        }
    }

    #[test]
    fn scrapes_are_in_time_order_at_each_host_offset() {
        let fleet = fleet(50, 9);
        let scrapes: Vec<(u32, i64)> = fleet.scrapes(1_000_000, 1_000_000 + 3_600_000).collect();
        // Every host once per interval, give or take the edges of the range.
        let per_host = 3_600_000 / INTERVAL_MS as usize;
        assert!((50 * (per_host - 1)..=50 * (per_host + 1)).contains(&scrapes.len()), "{} scrapes", scrapes.len());
        assert!(scrapes.iter().all(|&(_, ts)| (1_000_000..1_000_000 + 3_600_000).contains(&ts)));
        // Jitter of a few milliseconds may swap hosts scraped within a few ms of each other, no more.
        assert!(scrapes.windows(2).all(|pair| pair[1].1 >= pair[0].1 - 2 * JITTER_MS_MAX));
        let mut jittered = 0;
        for host in 0..50 {
            let times: Vec<i64> = scrapes.iter().filter(|s| s.0 == host).map(|s| s.1).collect();
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(
                    (INTERVAL_MS - 2 * JITTER_MS_MAX..=INTERVAL_MS + 2 * JITTER_MS_MAX).contains(&gap),
                    "gap {gap}"
                );
                jittered += usize::from(gap != INTERVAL_MS);
            }
        }
        assert!(jittered > 0, "some scrapes must be jittered");
        let offsets: std::collections::BTreeSet<i64> = (0..50).map(|host| fleet.hosts[host].offset_ms).collect();
        assert!(offsets.len() > 40, "hosts are scraped at their own offsets");
    }
}
