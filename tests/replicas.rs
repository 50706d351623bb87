//! Several `stackgate serve` replicas on one PostgreSQL database: real processes, the AWS
//! emulator, the GitHub stand-in, and PostgreSQL 15 started by the test runner.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::postgres::{Database, PrivateCluster};
use support::service::*;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";

/// A short lease, so that a takeover comes quickly in a test.
const LEASE: &str = "lease_seconds = 2";

/// `n` replicas of one service on the database at `url`.
fn replicas(n: usize, repo: &GitRepo, gh: &StandIn, url: &str) -> Vec<Server> {
    (0..n)
        .map(|_| {
            Server::start_opts(
                repo,
                gh,
                Opts {
                    state_extra: LEASE,
                    env: vec![("STACKGATE_STATE_URL", url.to_string())],
                    ..Opts::default()
                },
            )
        })
        .collect()
}

fn successes(gh: &StandIn, sha: &str, context: &str) -> usize {
    gh.statuses(sha)
        .iter()
        .filter(|s| s.0 == context && s.1 == "success")
        .count()
}

/// The job ids the statuses of `sha` in `context` link to.
fn job_of(gh: &StandIn, sha: &str, context: &str) -> Option<i64> {
    gh.requests()
        .iter()
        .filter(|r| r["operation"] == "repos/create-commit-status")
        .filter(|r| r["path_params"]["sha"] == sha && r["body"]["context"] == context)
        .filter_map(|r| r["body"]["target_url"].as_str())
        .filter_map(|u| u.rsplit('/').next()?.parse().ok())
        .next_back()
}

/// Every job, read through `server` (ids count up from 1 on a fresh database).
fn all_jobs(server: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut misses = 0;
    for id in 1.. {
        let j = server.job(id);
        if j["id"].is_null() {
            misses += 1;
            if misses > 3 {
                break;
            }
            continue;
        }
        misses = 0;
        out.push(j);
    }
    out
}

/// [`wait_for`], and the replicas' logs when it times out.
fn wait_logged<T>(
    servers: &[Server],
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = servers.iter().map(Server::logs).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The replica whose process holds the job's lease.
fn holder<'a>(servers: &'a mut [Server], job: &Value) -> Option<&'a mut Server> {
    let owner = job["owner"].as_str()?.to_string();
    servers.iter_mut().find(|s| {
        s.pid().is_some_and(|pid| {
            owner
                .split(|c: char| !c.is_ascii_digit())
                .any(|part| part == pid.to_string())
        })
    })
}

#[test]
fn the_same_delivery_sent_to_two_replicas_makes_one_job() {
    let db = Database::new();
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("replicas-dup");
    param_stack(&repo, "app", &name, "v0");
    let sha = repo.commit("v0");
    let servers = replicas(2, &repo, &gh, &db.url);

    let body = push_payload(ZERO, &sha, &["stacks/app/template.yaml"], false);
    let id = delivery_id();
    // Sent to both at once, as a redelivery racing the first delivery would be.
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .map(|s| {
                let (body, id) = (&body, &id);
                scope.spawn(move || s.webhook("push", id, body, Some(HOOK_SECRET)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = answers.iter().filter(|a| a.0 == 202).count();
    let duplicate = answers
        .iter()
        .filter(|a| a.0 == 200 && a.1["result"] == "duplicate")
        .count();
    assert_eq!((accepted, duplicate), (1, 1), "{answers:?}");

    let done = wait_for(60, "the deploy", || {
        final_state(&gh.statuses(&sha), "stackgate/app")
    });
    assert_eq!(done.0, "success", "{done:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(successes(&gh, &sha, "stackgate/app"), 1);
    let jobs = all_jobs(&servers[0]);
    let syncs = jobs.iter().filter(|j| j["kind"] == "sync").count();
    let deploys = jobs.iter().filter(|j| j["kind"] == "deploy").count();
    assert_eq!((syncs, deploys), (1, 1), "{jobs:#?}");
    gh.assert_all_valid();
    for s in &servers {
        s.assert_no_secret_in_logs();
    }
}

#[test]
fn a_replica_killed_mid_deploy_is_taken_over_and_reports_once_in_20_of_20() {
    let db = Database::new();
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("replicas-kill");
    let mut servers = replicas(2, &repo, &gh, &db.url);
    let mut before = ZERO.to_string();
    let mut takeovers = Vec::new();
    for trial in 0..20 {
        param_stack(&repo, "app", &name, &format!("v{trial}"));
        let sha = repo.commit(&format!("v{trial}"));
        // Each deploy stays in progress long enough for the kill to land while it runs.
        slow_stack(&name, 3.0);
        let (code, reply) = servers[trial % 2].push(&before, &sha, &["stacks/app/deployment.yaml"]);
        assert_eq!(code, 202, "{reply}");
        wait_for(60, "the deploy executing", || {
            gh.statuses(&sha)
                .iter()
                .any(|s| s.0 == "stackgate/app" && s.2 == "deploying…")
                .then_some(())
        });
        let id = job_of(&gh, &sha, "stackgate/app").expect("the deploy's job");
        // Its change set executing: the kill lands after the one AWS write that must
        // never happen twice.
        let job = wait_logged(&servers, 30, "the change set executing", || {
            let j = servers[0].job(id);
            (j["phase"] == "executing").then_some(j)
        });
        assert_eq!(job["state"], "running", "trial {trial}: {job:#}");
        let fence = job["fence"].as_i64().expect("a fencing token");
        let victim = holder(&mut servers, &job)
            .unwrap_or_else(|| panic!("trial {trial}: no replica holds {job:#}"));
        victim.kill();
        let killed = Instant::now();
        slow_stack(&name, 0.0);

        // Another replica takes the lease over, with a newer fencing token, and finishes.
        let taken = wait_logged(&servers, 30, "the takeover", || {
            let j = servers.iter().find(|s| s.pid().is_some())?.job(id);
            (j["fence"].as_i64() > Some(fence)).then_some(j)
        });
        takeovers.push(killed.elapsed());
        assert_ne!(taken["owner"], job["owner"], "{taken:#}");
        let live = servers
            .iter()
            .find(|s| s.pid().is_some())
            .expect("a live replica");
        let done = wait_for(60, "the taken-over deploy's end", || {
            let j = live.job(id);
            (j["state"] != "running").then_some(j)
        });
        assert_eq!(
            done["state"],
            "succeeded",
            "trial {trial}: {done:#}\n{}",
            live.logs()
        );
        wait_for(30, "the final status", || {
            final_state(&gh.statuses(&sha), "stackgate/app")
        });
        // The killed replica comes back for the next trial.
        for s in servers.iter_mut().filter(|s| s.pid().is_none()) {
            s.spawn();
        }
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            successes(&gh, &sha, "stackgate/app"),
            1,
            "trial {trial}: {:?}",
            gh.statuses(&sha)
        );
        assert_eq!(
            stack_parameter(&name, "Value").as_deref(),
            Some(format!("v{trial}").as_str())
        );
        before = sha;
    }
    eprintln!(
        "takeover after SIGKILL with a 2 s lease, min/max: {:?} / {:?}",
        takeovers.iter().min(),
        takeovers.iter().max()
    );
    gh.assert_all_valid();
}

#[test]
fn twenty_pushes_over_five_stacks_across_three_replicas_keep_order_and_supersede() {
    let db = Database::new();
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let names: Vec<String> = (0..5)
        .map(|i| unique(&format!("replicas-order{i}")))
        .collect();
    for (i, n) in names.iter().enumerate() {
        param_stack(&repo, &format!("app{i}"), n, "v0");
    }
    let mut before = repo.commit("v0");
    let servers = replicas(3, &repo, &gh, &db.url);
    servers[0].push(ZERO, &before, &["stacks"]);
    for (i, _) in names.iter().enumerate() {
        let ctx = format!("stackgate/app{i}");
        let s = wait_for(90, "the first deploys", || {
            final_state(&gh.statuses(&before), &ctx)
        });
        assert_eq!(s.0, "success", "{ctx}: {s:?}");
    }

    // 20 commits, each changing one stack, pushed in order to the three replicas in turn.
    let mut last = BTreeMap::new();
    let mut shas = Vec::new();
    for k in 1..=20 {
        let i = k % 5;
        let folder = format!("app{i}");
        param_stack(&repo, &folder, &names[i], &format!("v{k}"));
        let sha = repo.commit(&format!("{folder} v{k}"));
        let (code, reply) = servers[k % 3].push(
            &before,
            &sha,
            &[&format!("stacks/{folder}/deployment.yaml")],
        );
        assert_eq!(code, 202, "{reply}");
        last.insert(i, k);
        shas.push(sha.clone());
        before = sha;
        std::thread::sleep(Duration::from_millis(50));
    }

    // Every stack ends at its last commit's value.
    for (i, k) in &last {
        wait_for(120, "each stack at its last value", || {
            (stack_parameter(&names[*i], "Value").as_deref() == Some(format!("v{k}").as_str()))
                .then_some(())
        });
    }
    wait_for(60, "the queue to drain", || {
        let jobs = all_jobs(&servers[1]);
        jobs.iter()
            .all(|j| j["state"] != "queued" && j["state"] != "running")
            .then_some(())
    });
    let jobs = all_jobs(&servers[2]);
    // One deploy of a stack at a time, and they ran in commit order.
    let mut by_stack: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for j in jobs
        .iter()
        .filter(|j| j["kind"] == "deploy" && j["started_at"].is_i64())
    {
        by_stack
            .entry(j["stack"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(j);
    }
    assert_eq!(by_stack.len(), 5, "{by_stack:#?}");
    for (stack, mut runs) in by_stack {
        runs.sort_by_key(|j| j["started_at"].as_i64());
        for pair in runs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                a["finished_at"].as_i64() <= b["started_at"].as_i64(),
                "{stack}: two deploys overlapped: {a:#} {b:#}"
            );
            let order = |j: &Value| shas.iter().position(|s| j["sha"] == s.as_str());
            assert!(
                order(a) < order(b),
                "{stack}: deployed out of order: {a:#} {b:#}"
            );
        }
    }
    // No commit's stack status is left pending: it succeeded, or says it was superseded.
    // The last jobs' statuses may still be on their way out when the queue has drained
    // (a replica that is not the poster does not wake it): wait for the outbox first.
    let settled = |sha: &String| {
        let statuses = gh.statuses(sha);
        statuses
            .iter()
            .filter(|s| s.0.starts_with("stackgate/app"))
            .all(|s| final_state(&statuses, &s.0).is_some())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !shas.iter().all(settled) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for sha in &shas {
        for (ctx, state, desc) in gh.statuses(sha) {
            if !ctx.starts_with("stackgate/app") {
                continue;
            }
            let end = final_state(&gh.statuses(sha), &ctx);
            assert!(end.is_some(), "{sha} {ctx} left at {state} {desc}");
        }
    }
    gh.assert_all_valid();
}

#[test]
fn a_database_restart_mid_deploy_loses_nothing_and_does_nothing_twice() {
    let cluster = PrivateCluster::start();
    let db = Database::on(&cluster.url);
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("replicas-pgdown");
    param_stack(&repo, "app", &name, "v0");
    let sha = repo.commit("v0");
    let servers = replicas(2, &repo, &gh, &db.url);
    slow_stack(&name, 4.0);
    assert_eq!(
        servers[0].push(ZERO, &sha, &["stacks/app/template.yaml"]).0,
        202
    );
    wait_for(60, "the deploy executing", || {
        gh.statuses(&sha)
            .iter()
            .any(|s| s.0 == "stackgate/app" && s.2 == "deploying…")
            .then_some(())
    });

    cluster.pause();
    // While the database is away, a delivery is refused for GitHub to redeliver, never
    // accepted without its row.
    param_stack(&repo, "app", &name, "v1");
    let sha1 = repo.commit("v1");
    let body = push_payload(&sha, &sha1, &["stacks/app/deployment.yaml"], false);
    let id = delivery_id();
    for s in &servers {
        let (code, reply) = s.webhook("push", &id, &body, Some(HOOK_SECRET));
        assert_eq!(code, 503, "{reply}");
    }
    std::thread::sleep(Duration::from_secs(3));
    cluster.resume();
    slow_stack(&name, 0.0);

    // The redelivery is accepted once the database is back.
    wait_for(30, "the redelivery accepted", || {
        let (code, _) = servers[1].webhook("push", &id, &body, Some(HOOK_SECRET));
        (code == 202).then_some(())
    });
    let first = wait_logged(&servers, 90, "the first deploy's end", || {
        final_state(&gh.statuses(&sha), "stackgate/app")
    });
    assert_eq!(first.0, "success", "{first:?}\n{}", servers[0].logs());
    let second = wait_for(90, "the redelivered push's deploy", || {
        final_state(&gh.statuses(&sha1), "stackgate/app")
    });
    assert_eq!(second.0, "success", "{second:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(successes(&gh, &sha, "stackgate/app"), 1);
    assert_eq!(successes(&gh, &sha1, "stackgate/app"), 1);
    assert_eq!(stack_parameter(&name, "Value").as_deref(), Some("v1"));
    for s in &servers {
        s.assert_no_secret_in_logs();
    }
}
