//! The synthetic engine `streamctl simulate` drives: entities, a camera moving through zones of
//! streamed assets, shader pipelines built over several frames, and a model of frame cost.
//!
//! Everything here is a pure function of the seed and of what the runtime published, so two
//! runs with the same seed do the same work in the same order.

use std::sync::Arc;

/// The world's size and population.
#[derive(Debug, Clone, Copy)]
pub struct WorldConfig {
    /// Zones along the camera's path.
    pub zones: u32,
    /// Meshes streamed per zone.
    pub meshes_per_zone: u32,
    /// Textures streamed per zone.
    pub textures_per_zone: u32,
    /// Entities simulated.
    pub entities: usize,
}

/// Width of a zone in world units.
pub const ZONE_WIDTH: f32 = 100.0;
/// The fixed simulation step, in microseconds of simulated time (60 Hz).
pub const FIXED_STEP_US: u64 = 16_667;
/// Compile units a shader build advances per frame.
const BUILD_UNITS_PER_FRAME: u32 = 80;

#[derive(Debug, Clone, Copy)]
struct Entity {
    pos: [f32; 3],
    vel: [f32; 3],
}

/// A pipeline that takes several frames to build; draws use a fallback until it is ready.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub zone: u32,
    pub units_left: u32,
}

/// The engine-side state; see the module docs.
#[derive(Debug)]
pub struct World {
    pub config: WorldConfig,
    rng: fastrand::Rng,
    pub camera_x: f32,
    speed: f32,
    entities: Vec<Entity>,
    accumulator_us: u64,
    pub building: Vec<Pipeline>,
    pub ready_pipelines: Vec<u32>,
}

impl World {
    /// A world of `config.entities` entities spread over the zones.
    pub fn new(config: WorldConfig, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x005e_ed0f_3e9e);
        let width = config.zones as f32 * ZONE_WIDTH;
        let entities = (0..config.entities)
            .map(|_| Entity {
                pos: [rng.f32() * width, rng.f32() * 20.0, rng.f32() * 50.0],
                vel: [rng.f32() - 0.5, rng.f32() - 0.5, rng.f32() - 0.5],
            })
            .collect();
        Self {
            config,
            rng,
            camera_x: 0.0,
            speed: 10.0,
            entities,
            accumulator_us: 0,
            building: Vec::new(),
            ready_pipelines: Vec::new(),
        }
    }

    /// The zone the camera is in.
    pub fn zone(&self) -> u32 {
        ((self.camera_x / ZONE_WIDTH) as u32).min(self.config.zones.saturating_sub(1))
    }

    /// Input snapshot: the player's throttle this frame (the camera's speed in units/frame);
    /// now and then the player fast-travels five zones ahead, leaving loads behind.
    pub fn input(&mut self) -> u32 {
        self.speed = (self.speed + self.rng.f32() * 4.0 - 2.0).clamp(4.0, 30.0);
        let travel = if self.rng.u32(0..50) == 0 { 5.0 * ZONE_WIDTH } else { 0.0 };
        let max_x = self.config.zones as f32 * ZONE_WIDTH - 1.0;
        self.camera_x = (self.camera_x + self.speed + travel).min(max_x);
        self.speed as u32
    }

    /// Fixed-step simulation: runs as many 60 Hz steps as the last frame's simulated time
    /// covers (at most four, the spiral-of-death guard). Returns the steps run.
    pub fn fixed_steps(&mut self, last_frame_us: u64) -> u32 {
        self.accumulator_us = (self.accumulator_us + last_frame_us).min(4 * FIXED_STEP_US);
        let mut steps = 0;
        let width = self.config.zones as f32 * ZONE_WIDTH;
        while self.accumulator_us >= FIXED_STEP_US {
            self.accumulator_us -= FIXED_STEP_US;
            steps += 1;
            for e in &mut self.entities {
                for axis in 0..3 {
                    e.pos[axis] += e.vel[axis];
                }
                // Turned back towards the world, not flipped: one spawned past its edge (near
                // a camera in the last zone) would flip at every step and never come back.
                if e.pos[0] < 0.0 {
                    e.vel[0] = e.vel[0].abs();
                } else if e.pos[0] > width {
                    e.vel[0] = -e.vel[0].abs();
                }
            }
        }
        steps
    }

    /// Scene mutations: a few entities despawn and as many spawn near the camera. Returns how
    /// many were replaced.
    pub fn mutate(&mut self) -> u32 {
        let n = self.rng.u32(0..4);
        for _ in 0..n {
            if self.entities.is_empty() {
                break;
            }
            let i = self.rng.usize(..self.entities.len());
            self.entities.swap_remove(i);
            let x = self.camera_x + self.rng.f32() * 200.0;
            self.entities.push(Entity { pos: [x, 0.0, 0.0], vel: [0.1, 0.0, 0.0] });
        }
        n
    }

    /// Transforms: a checksum of every entity's world matrix translation (quantised).
    pub fn transforms(&self) -> u64 {
        self.entities
            .iter()
            .fold(0u64, |acc, e| acc.wrapping_mul(31).wrapping_add((e.pos[0] * 16.0) as i64 as u64))
    }

    /// The positions handed to this frame's parallel tasks.
    pub fn snapshot(&self) -> Arc<Vec<[f32; 3]>> {
        Arc::new(self.entities.iter().map(|e| e.pos).collect())
    }

    /// Starts a zone's pipeline build, seeded length.
    pub fn start_build(&mut self, zone: u32) {
        let units_left = self.rng.u32(60..400);
        self.building.push(Pipeline { zone, units_left });
    }

    /// The builds to advance this frame: the two oldest, with the units each may use.
    pub fn builds_this_frame(&self) -> Vec<(u32, u32)> {
        self.building
            .iter()
            .take(2)
            .map(|p| (p.zone, p.units_left.min(BUILD_UNITS_PER_FRAME)))
            .collect()
    }

    /// Applies the units built this frame; returns the zones whose pipeline became ready.
    pub fn finish_builds(&mut self, built: &[(u32, u32)]) -> Vec<u32> {
        for (zone, units) in built {
            if let Some(p) = self.building.iter_mut().find(|p| p.zone == *zone) {
                p.units_left -= units;
            }
        }
        let done: Vec<u32> =
            self.building.iter().filter(|p| p.units_left == 0).map(|p| p.zone).collect();
        self.building.retain(|p| p.units_left > 0);
        self.ready_pipelines.extend(&done);
        done
    }

    /// Whether a spike (a streaming stall, a GC pause) hits this frame.
    pub fn spike(&mut self) -> bool {
        self.rng.u32(0..40) == 0
    }
}

/// What a frame's cost model needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameWork {
    pub entities: usize,
    pub published: u32,
    pub fallback_draws: u32,
    pub build_units: u32,
    pub spike: bool,
}

/// Simulated frame time in microseconds: a fixed cost, per-entity work, the cost of
/// integrating each published asset (GPU upload), fallback draws, shader compilation, and
/// the occasional spike. Deterministic, so budget adaptation is too.
pub fn frame_cost_us(work: &FrameWork) -> u64 {
    4_000
        + 4 * work.entities as u64
        + 150 * u64::from(work.published)
        + 2 * u64::from(work.fallback_draws)
        + 3 * u64::from(work.build_units)
        + if work.spike { 9_000 } else { 0 }
}

/// Compiles `units` of a synthetic shader: real work proportional to the units.
pub fn compile(zone: u32, units: u32) -> u64 {
    (0..units * 200).fold(u64::from(zone), |h, i| (h ^ u64::from(i)).wrapping_mul(0x0100_0000_01b3))
}

/// The frame's parallel tasks, by name: each returns a checksum of its work.
pub fn task(name: &str, positions: &[[f32; 3]], camera_x: f32) -> u64 {
    let visible = |p: &[f32; 3]| p[0] >= camera_x - 50.0 && p[0] <= camera_x + 250.0;
    match name {
        "animation" => positions
            .iter()
            .map(|p| ((p[0] * 0.1).sin() * 1000.0) as i64 as u64)
            .fold(0, u64::wrapping_add),
        "particles" => (0..positions.len() as u64 * 4)
            .fold(0, |h, i| h.wrapping_mul(6364136223846793005).wrapping_add(i)),
        "culling" => positions.iter().filter(|p| visible(p)).count() as u64,
        "lod" => positions
            .iter()
            .filter(|p| visible(p))
            .map(|p| if (p[0] - camera_x).abs() < 80.0 { 0 } else { 1 })
            .sum(),
        _ => 0,
    }
}

/// Records one surface's command list: the visible entities it draws, and how many of those
/// draws used a fallback pipeline.
pub fn record_surface(
    surface: &str,
    positions: &[[f32; 3]],
    camera_x: f32,
    ready_pipelines: &[u32],
) -> (Vec<u32>, u32) {
    let (near, far) = match surface {
        "shadow" => (camera_x - 80.0, camera_x + 300.0),
        "reflection" => (camera_x, camera_x + 150.0),
        "ui" => return ((0..8).collect(), 0),
        _ => (camera_x - 50.0, camera_x + 250.0),
    };
    let mut fallbacks = 0;
    let draws = positions
        .iter()
        .enumerate()
        .filter(|(_, p)| p[0] >= near && p[0] <= far)
        .map(|(i, p)| {
            let zone = (p[0] / ZONE_WIDTH) as u32;
            if !ready_pipelines.contains(&zone) {
                fallbacks += 1;
            }
            i as u32
        })
        .collect();
    (draws, fallbacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_spawned_past_the_edge_walks_back_into_the_world() {
        let config =
            WorldConfig { zones: 2, meshes_per_zone: 1, textures_per_zone: 1, entities: 0 };
        let mut world = World::new(config, 7);
        let width = config.zones as f32 * ZONE_WIDTH;
        world.entities.push(Entity { pos: [width + 150.0, 0.0, 0.0], vel: [0.1, 0.0, 0.0] });
        // 150 units at 0.1 a step, four steps a frame: back inside within 400 frames.
        for _ in 0..400 {
            world.fixed_steps(4 * FIXED_STEP_US);
        }
        assert!(world.entities[0].pos[0] <= width, "{:?}", world.entities[0]);
    }
}
