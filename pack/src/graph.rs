//! The dependency graph a pack's index declares, checked by the writer (before it writes the
//! index) and by the reader (before it trusts one) the same way but for a dependency an entry
//! names twice, which only the writer refuses.
//!
//! # Invariants
//!
//! A graph that passes [`check_graph`] has, per entry, at most [`DEPS_PER_ENTRY_MAX`]
//! dependencies, each an entry of the pack, and no cycle (an entry depending on itself
//! included). The writer also refuses a dependency named twice ([`Repeats::Refuse`]); the
//! reader takes one once, as packs of older writers may name one twice. Each dependency is
//! looked up once, into [`DepLists`] (positions), which the cycle search walks and the reader
//! keeps; a repeat of a dependency the pack holds is seen there, without a set of names (one
//! the pack lacks is reported missing however often it is named). Whatever the entries' order,
//! the writer's errors come in one order: too many dependencies, then a repeat, then missing
//! ones, then a cycle. The check is linear in entries plus dependencies, and iterative, so a
//! deep chain cannot overflow the stack.

use crate::format::{IndexEntry, DEPS_PER_ENTRY_MAX};
use crate::lookup::KeyTable;

/// The most missing dependencies an error lists: a hostile index naming a missing key a
/// thousand times in each of its entries would otherwise have every pair copied, gigabytes for
/// an index of megabytes.
pub const MISSING_LISTED_MAX: usize = 16;

/// Why a pack's dependency graph is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GraphError {
    /// An entry with more than [`DEPS_PER_ENTRY_MAX`] dependencies.
    #[error("{count} dependencies, over the limit of {DEPS_PER_ENTRY_MAX}")]
    TooMany { key: String, count: usize },
    /// An entry naming one dependency twice.
    #[error("depends on {dep:?} twice")]
    Repeated { key: String, dep: String },
    /// The entries up to this one name 2^32 dependencies or more in all, more than a pack's
    /// lists of positions number.
    #[error("the dependencies up to this entry number 2^32 or more in all")]
    TooManyInAll { key: String },
    /// Dependencies on keys the pack does not hold, as (entry, dependency) pairs: the first
    /// [`MISSING_LISTED_MAX`].
    #[error("depends on {:?}, which is not in the pack", .0[0].1)]
    Missing(Vec<(String, String)>),
    /// A cycle, as the keys around it (the first repeated at the end).
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

impl GraphError {
    /// The entry the error is about (the first, for several).
    pub(crate) fn key(&self) -> &str {
        match self {
            Self::TooMany { key, .. } | Self::Repeated { key, .. } | Self::TooManyInAll { key } => {
                key
            }
            Self::Missing(pairs) => &pairs[0].0,
            Self::Cycle(keys) => &keys[0],
        }
    }
}

/// Every entry's dependencies as entry positions, each named once, in the order the index
/// names them first: entry `i`'s are `deps[starts[i]..starts[i + 1]]`.
#[derive(Debug, Default)]
pub(crate) struct DepLists {
    starts: Vec<u32>,
    deps: Vec<u32>,
}

impl DepLists {
    /// The positions entry `at` depends on.
    pub(crate) fn of(&self, at: usize) -> &[u32] {
        &self.deps[self.starts[at] as usize..self.starts[at + 1] as usize]
    }
}

/// How a dependency that one entry names twice is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeats {
    /// The graph is refused: the writer's check, as no pack it writes names one twice.
    Refuse,
    /// The dependency is taken once: the reader's, as older writers let repeats through.
    TakeOnce,
}

/// Checks `entries`' dependencies (see the module invariants) and gives them as positions,
/// a repeated dependency treated as `repeats` says. `table` is the table of `entries` (so keys
/// are unique, and fewer than 2^32).
pub(crate) fn check_graph(
    entries: &[IndexEntry],
    table: &KeyTable,
    repeats: Repeats,
) -> Result<DepLists, GraphError> {
    if let Some(entry) = entries.iter().find(|e| e.deps.len() > DEPS_PER_ENTRY_MAX) {
        return Err(GraphError::TooMany { key: entry.key.clone(), count: entry.deps.len() });
    }
    let lists = resolve(entries, table, repeats)?;
    find_cycle(entries, &lists)?;
    Ok(lists)
}

/// Each dependency looked up once: the lists; else the first repeat if `repeats` refuses them,
/// else the first [`MISSING_LISTED_MAX`] missing (the lookups go on past them, so that a later
/// repeat still comes first).
fn resolve(
    entries: &[IndexEntry],
    table: &KeyTable,
    repeats: Repeats,
) -> Result<DepLists, GraphError> {
    let mut lists = DepLists { starts: Vec::with_capacity(entries.len() + 1), deps: Vec::new() };
    let mut missing = Vec::new();
    let mut repeated = None;
    // The entry (plus one) that last named each position: a repeat is seen without a set.
    let mut named_by = vec![0u32; entries.len()];
    lists.starts.push(0);
    for (at, entry) in entries.iter().enumerate() {
        // Fewer than 2^32 entries (the table holds them all), so `at + 1` fits.
        let stamp = at as u32 + 1;
        for dep in &entry.deps {
            match table.find(entries, dep) {
                Some(to) if named_by[to] != stamp => {
                    named_by[to] = stamp;
                    lists.deps.push(to as u32);
                }
                Some(_) if repeats == Repeats::Refuse && repeated.is_none() => {
                    repeated =
                        Some(GraphError::Repeated { key: entry.key.clone(), dep: dep.clone() });
                }
                Some(_) => {}
                None if missing.len() < MISSING_LISTED_MAX => {
                    missing.push((entry.key.clone(), dep.clone()));
                }
                None => {}
            }
        }
        // Only an index of 4 GiB or more names that many (each name takes a byte of it at
        // least), which a reader refuses; a writer could hold them in memory.
        let Ok(total) = u32::try_from(lists.deps.len()) else {
            return Err(GraphError::TooManyInAll { key: entry.key.clone() });
        };
        lists.starts.push(total);
    }
    match repeated {
        Some(repeat) => Err(repeat),
        None if missing.is_empty() => Ok(lists),
        None => Err(GraphError::Missing(missing)),
    }
}

/// Where an entry stands in the search for a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unvisited,
    OnPath,
    Done,
}

/// An iterative depth-first search with an explicit path over entry positions (a byte of
/// state per entry).
fn find_cycle(entries: &[IndexEntry], lists: &DepLists) -> Result<(), GraphError> {
    let mut marks = vec![Mark::Unvisited; entries.len()];
    // Empty again whenever a root's walk ends, so one serves every root.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..entries.len() {
        if marks[root] != Mark::Unvisited {
            continue;
        }
        path.push((root, 0));
        marks[root] = Mark::OnPath;
        while let Some((at, next)) = path.last_mut() {
            let Some(&to) = lists.of(*at).get(*next) else {
                marks[*at] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            let to = to as usize;
            match marks[to] {
                Mark::OnPath => {
                    let start = path.iter().position(|&(k, _)| k == to).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|&(k, _)| entries[k].key.clone()).collect();
                    cycle.push(entries[to].key.clone());
                    return Err(GraphError::Cycle(cycle));
                }
                Mark::Unvisited => {
                    marks[to] = Mark::OnPath;
                    path.push((to, 0));
                }
                Mark::Done => {}
            }
        }
    }
    Ok(())
}
