//! Runs policy components in wasmtime: compiled once per digest (and cached precompiled on
//! disk), instantiated fresh for every evaluation, with no imports, a memory cap and a
//! wall-clock deadline. Every failure is an `error` verdict: the gate fails closed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};

use super::input::PolicyInput;
use super::{Finding, Outcome, Report, Severity, Verdict};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../policies/wit",
        world: "policy",
    });
}

use bindings::stackgate::policy::types as wit;

include!(concat!(env!("OUT_DIR"), "/embedded_policies.rs"));

/// The epoch ticks every this long; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(10);

/// Bounds on one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Duration,
    pub memory_bytes: usize,
    /// Evaluations that may run at once.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            concurrency: 4,
        }
    }
}

/// Where a policy comes from, and the digest it must have.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub name: String,
    pub bytes: Vec<u8>,
    /// The sha256 the bytes must have; `None` accepts what is there and reports it.
    pub pinned: Option<String>,
    pub settings: Value,
}

impl PolicySource {
    /// The policies built into this binary from `policies/`.
    pub fn embedded() -> Vec<Self> {
        EMBEDDED
            .iter()
            .map(|(name, digest, bytes)| Self {
                name: (*name).to_string(),
                bytes: bytes.to_vec(),
                pinned: Some((*digest).to_string()),
                settings: Value::Object(Default::default()),
            })
            .collect()
    }

    /// Every `*.wasm` in a folder; the policy's name is the file stem.
    pub fn from_dir(dir: &Path) -> Result<Vec<Self>, PolicyLoadError> {
        let err = |e: std::io::Error| PolicyLoadError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut out = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p).map_err(|e| PolicyLoadError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            out.push(Self {
                name: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes,
                pinned: None,
                settings: Value::Object(Default::default()),
            });
        }
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(
        "policy `{name}`: sha256 is {actual}, but the configuration pins {pinned}; refusing to load it"
    )]
    DigestMismatch {
        name: String,
        pinned: String,
        actual: String,
    },
    #[error("policy `{name}`: not a valid stackgate policy component: {message}")]
    Invalid { name: String, message: String },
    #[error("policy engine: {0}")]
    Engine(String),
}

struct Loaded {
    name: String,
    digest: String,
    settings: Value,
    pre: bindings::PolicyPre<Sandbox>,
}

/// The store's data: only the memory limiter. The guest gets nothing else.
struct Sandbox {
    limits: StoreLimits,
}

/// Loaded policies, ready to evaluate.
pub struct PolicyHost {
    engine: Engine,
    policies: Vec<Arc<Loaded>>,
    limits: Limits,
    permits: Arc<tokio::sync::Semaphore>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for PolicyHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PolicyHost {
    /// Checks digests, compiles (or loads precompiled from `cache_dir`) and pre-instantiates.
    pub fn load(
        sources: Vec<PolicySource>,
        limits: Limits,
        cache_dir: Option<&Path>,
    ) -> Result<Self, PolicyLoadError> {
        let engine = engine(&limits)?;
        let linker: Linker<Sandbox> = Linker::new(&engine);
        let mut policies = Vec::new();
        let mut seen: BTreeMap<String, Component> = BTreeMap::new();
        for src in sources {
            let digest = hex::encode(Sha256::digest(&src.bytes));
            if let Some(pinned) = &src.pinned
                && !pinned.eq_ignore_ascii_case(&digest)
            {
                return Err(PolicyLoadError::DigestMismatch {
                    name: src.name,
                    pinned: pinned.clone(),
                    actual: digest,
                });
            }
            let component = match seen.get(&digest) {
                Some(c) => c.clone(),
                None => {
                    let c = compile_cached(&engine, &src.name, &digest, &src.bytes, cache_dir)?;
                    seen.insert(digest.clone(), c.clone());
                    c
                }
            };
            let invalid = |e: wasmtime::Error| PolicyLoadError::Invalid {
                name: src.name.clone(),
                message: format!("{e:#}"),
            };
            let pre = linker.instantiate_pre(&component).map_err(invalid)?;
            let pre = bindings::PolicyPre::new(pre).map_err(invalid)?;
            policies.push(Arc::new(Loaded {
                name: src.name,
                digest,
                settings: src.settings,
                pre,
            }));
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.weak(), ticker_stop.clone());
        Ok(Self {
            engine,
            policies,
            permits: Arc::new(tokio::sync::Semaphore::new(limits.concurrency.max(1))),
            limits,
            ticker_stop,
        })
    }

    /// (name, digest) of each loaded policy.
    pub fn policies(&self) -> Vec<(String, String)> {
        self.policies
            .iter()
            .map(|p| (p.name.clone(), p.digest.clone()))
            .collect()
    }

    /// Runs every policy on the input, each on the blocking pool behind the concurrency
    /// limit. `lines` maps a finding's JSON pointer to its template line.
    pub async fn evaluate(
        &self,
        input: &PolicyInput,
        lines: Option<&crate::stack::yaml::Document>,
    ) -> Report {
        let mut outcomes = Vec::with_capacity(self.policies.len() + 1);
        // The host's own refusals come first, and stand whatever the policies say.
        outcomes.extend(super::refusal::outcome(input, lines));
        for policy in &self.policies {
            let json = match input.to_json(&input.settings_for(&policy.name, &policy.settings)) {
                Ok(j) => j,
                Err(e) => {
                    outcomes.push(error_outcome(
                        policy,
                        format!("cannot encode the input: {e}"),
                        0,
                    ));
                    continue;
                }
            };
            let outcome = match self.permits.clone().acquire_owned().await {
                Ok(permit) => {
                    let task_policy = policy.clone();
                    let engine = self.engine.clone();
                    let limits = self.limits;
                    // The job's span (repo, sha, stack, job) carries into the blocking pool.
                    let span = tracing::info_span!("evaluate", policy = %policy.name);
                    let task = tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        span.in_scope(|| run_one(&engine, &task_policy, &json, limits))
                    });
                    match task.await {
                        Ok(o) => o,
                        Err(e) => error_outcome(policy, format!("evaluation task failed: {e}"), 0),
                    }
                }
                Err(_) => error_outcome(policy, "the policy host is shutting down".into(), 0),
            };
            outcomes.push(outcome);
        }
        if let Some(doc) = lines {
            for o in &mut outcomes {
                for f in &mut o.findings {
                    f.line = doc.line_of(&f.path);
                }
            }
        }
        Report::from_outcomes(outcomes)
    }

    /// Synchronous evaluation for benchmarks and tools: same sandbox, calling thread.
    pub fn evaluate_blocking(&self, input: &PolicyInput) -> Report {
        let mut outcomes: Vec<Outcome> = super::refusal::outcome(input, None).into_iter().collect();
        outcomes.extend(self.policies.iter().map(|p| {
            match input.to_json(&input.settings_for(&p.name, &p.settings)) {
                Ok(json) => run_one(&self.engine, p, &json, self.limits),
                Err(e) => error_outcome(p, format!("cannot encode the input: {e}"), 0),
            }
        }));
        Report::from_outcomes(outcomes)
    }
}

/// Guard pages after each linear memory. The reservation is the memory cap, not 4 GiB, so
/// bounds checks are explicit anyway; the guard only catches small overruns cheaply.
const MEMORY_GUARD: u64 = 2 << 20;

fn engine(limits: &Limits) -> Result<Engine, PolicyLoadError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Deep recursion traps instead of taking the host down.
    config.max_wasm_stack(1 << 20);
    // Each memory reserves its cap, not wasmtime's default 4 GiB + 32 MiB guard: with 32
    // pool slots that was 129 GiB of address space, refused under `ulimit -v` or strict
    // overcommit. Pooled memories never move, so no room for growth is reserved.
    let cap = limits.memory_bytes.max(1 << 16);
    config.memory_reservation(cap as u64);
    config.memory_guard_size(MEMORY_GUARD);
    config.memory_reservation_for_growth(0);
    let p = pool_sizes(limits);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(p.instances)
        .total_core_instances(p.core_instances)
        .total_memories(p.memories)
        .total_tables(p.tables)
        .max_memory_size(cap);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| PolicyLoadError::Engine(format!("{e:#}")))
}

/// Pool slots: twice the evaluations that may run at once (a finished store may still be
/// dropping while the next starts), each with room for a few core instances.
struct PoolSizes {
    instances: u32,
    core_instances: u32,
    memories: u32,
    tables: u32,
}

fn pool_sizes(limits: &Limits) -> PoolSizes {
    let slots = (limits.concurrency.clamp(1, 1024) * 2) as u32;
    PoolSizes {
        instances: slots,
        core_instances: slots * 4,
        memories: slots * 2,
        tables: slots * 4,
    }
}

/// Compiles a component, or loads the precompiled artifact cached under its digest and the
/// engine's compatibility hash (loading takes well under a millisecond; compiling, ~100 ms).
fn compile_cached(
    engine: &Engine,
    name: &str,
    digest: &str,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> Result<Component, PolicyLoadError> {
    let invalid = |e: wasmtime::Error| PolicyLoadError::Invalid {
        name: name.to_string(),
        message: format!("{e:#}"),
    };
    let Some(dir) = cache_dir else {
        return Component::new(engine, bytes).map_err(invalid);
    };
    let path = dir.join(format!("{digest}-{}.cwasm", engine_hash(engine)));
    if path.is_file() {
        // SAFETY: the file is one this process family wrote into its own cache folder
        // (created 0700), named by the source digest and the engine's compatibility hash;
        // wasmtime also checks the header and version before using it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a bad precompiled policy")
            }
        }
    }
    let precompiled = engine.precompile_component(bytes).map_err(invalid)?;
    if let Err(e) = write_private(dir, &path, &precompiled) {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache a precompiled policy");
    }
    // SAFETY: `precompiled` was produced just now by this engine.
    unsafe { Component::deserialize(engine, &precompiled) }.map_err(invalid)
}

fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn engine_hash(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

fn spawn_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            }
        });
}

fn error_outcome(policy: &Loaded, error: String, micros: u64) -> Outcome {
    Outcome {
        policy: policy.name.clone(),
        digest: policy.digest.clone(),
        verdict: Verdict::Error,
        findings: Vec::new(),
        error: Some(error),
        micros,
    }
}

/// One evaluation in a fresh store and instance.
fn run_one(engine: &Engine, policy: &Loaded, input: &str, limits: Limits) -> Outcome {
    let start = Instant::now();
    let mut store = Store::new(
        engine,
        Sandbox {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .instances(4)
                .build(),
        },
    );
    store.limiter(|s| &mut s.limits);
    let ticks = (limits.deadline.as_millis() / TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();

    let result = policy
        .pre
        .instantiate(&mut store)
        .and_then(|p| p.call_evaluate(&mut store, input));
    let micros = start.elapsed().as_micros() as u64;
    match result {
        Ok(Ok(findings)) => {
            let findings: Vec<Finding> = findings
                .into_iter()
                .map(|f| Finding {
                    policy: policy.name.clone(),
                    rule: f.rule,
                    severity: match f.severity {
                        wit::Severity::Error => Severity::Error,
                        wit::Severity::Warning => Severity::Warning,
                    },
                    resource: f.resource,
                    path: f.path,
                    message: f.message,
                    remediation: f.remediation,
                    line: None,
                    file: None,
                })
                .collect();
            if let Some(bad) = findings.iter().find(|f| f.rule.is_empty()) {
                return error_outcome(
                    policy,
                    format!(
                        "malformed output: a finding without a rule id ({})",
                        bad.message
                    ),
                    micros,
                );
            }
            let verdict = if findings.iter().any(|f| f.severity == Severity::Error) {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            Outcome {
                policy: policy.name.clone(),
                digest: policy.digest.clone(),
                verdict,
                findings,
                error: None,
                micros,
            }
        }
        Ok(Err(msg)) => error_outcome(
            policy,
            format!("the policy reported an error: {msg}"),
            micros,
        ),
        Err(trap) => error_outcome(policy, describe_trap(&trap, limits), micros),
    }
}

fn describe_trap(err: &wasmtime::Error, limits: Limits) -> String {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "ran past its deadline of {} ms and was stopped",
            limits.deadline.as_millis()
        ),
        Some(wasmtime::Trap::StackOverflow) => {
            "trapped: call stack exhausted (runaway recursion)".into()
        }
        Some(t) => {
            let text = format!("{err:#}");
            if text.contains("memory") && text.contains("grow")
                || matches!(t, wasmtime::Trap::AllocationTooLarge)
            {
                format!(
                    "trapped: memory limit of {} MiB reached",
                    limits.memory_bytes >> 20
                )
            } else {
                format!("trapped: {t}")
            }
        }
        None => {
            let text = format!("{err:#}");
            if text.contains("memory") && (text.contains("limit") || text.contains("grow")) {
                format!(
                    "trapped: memory limit of {} MiB reached",
                    limits.memory_bytes >> 20
                )
            } else {
                format!("failed: {text}")
            }
        }
    }
}
