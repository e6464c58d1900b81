//! The supervision matrix: panics and errors in `started` and in handlers, for each restart
//! kind and strategy, and the intensity boundary on a manual clock.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use actix::{Actor, ActorContext, Context, Handler, System};

use super::*;
use crate::{AskPatience, Backoff, Intensity, ManualClock, RestartKind, RestartPolicy, Strategy};

const PATIENCE: Duration = Duration::from_secs(10);

/// How the tests ask a supervisor: one that gave up stops, and answers nothing.
const WHILE_ALIVE: AskPatience = AskPatience::WhileAlive;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    PanicInStarted,
    ErrorInStarted,
    PanicInHandler,
    ErrorInHandler,
    StopNormally,
    /// Its start function fails from its second start on (the child's own start, not its
    /// actor's `started`).
    FailsToRestart,
    /// Its start function fails the first time only.
    FailsToStartOnce,
    /// Its start function always fails, logging `refused NAME`.
    NeverStarts,
    /// Its handler panics outside `guarded` (actix then runs its `stopped` as the panic drops
    /// its task).
    PanicUnguarded,
    /// It stops, and its `stopped` panics before it reports its exit.
    PanicInStopped,
}

/// Logs `start NAME N` and `stop NAME N`; fails its first incarnation as its plan says.
struct TestChild {
    name: &'static str,
    link: ChildLink,
    first_start: Option<Fault>,
    log: mpsc::Sender<String>,
    panic_in_stopped: bool,
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct Trigger(Fault);

impl Actor for TestChild {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _ = self.log.send(format!("start {} {}", self.name, self.link.incarnation()));
        let fault = self.first_start.filter(|_| self.link.incarnation() == 1);
        let ok = guarded(&self.link, || match fault {
            Some(Fault::PanicInStarted) => panic!("boom in started"),
            Some(Fault::ErrorInStarted) => Err("error in started".to_owned()),
            _ => Ok(()),
        });
        if ok.is_none() {
            ctx.stop();
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        assert!(!self.panic_in_stopped, "boom in stopped");
        self.link.exit(ExitReason::Normal);
        let _ = self.log.send(format!("stop {} {}", self.name, self.link.incarnation()));
    }
}

impl Handler<Trigger> for TestChild {
    type Result = ();
    fn handle(&mut self, Trigger(fault): Trigger, ctx: &mut Context<Self>) {
        assert_ne!(fault, Fault::PanicUnguarded, "boom outside guarded");
        self.panic_in_stopped = fault == Fault::PanicInStopped;
        let ok = guarded(&self.link, || match fault {
            Fault::PanicInHandler => panic!("boom in handler"),
            Fault::ErrorInHandler => Err("error in handler".to_owned()),
            _ => Ok(()),
        });
        if ok.is_none() || matches!(fault, Fault::StopNormally | Fault::PanicInStopped) {
            ctx.stop();
        }
    }
}

impl Handler<StopChild> for TestChild {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

type Triggers = Arc<Mutex<Vec<actix::Addr<TestChild>>>>;

/// An actix system on a thread of its own, running what `start` started in it on a manual
/// clock; stopped and joined when dropped.
struct OwnSystem {
    system: System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OwnSystem {
    fn start(start: impl FnOnce(Arc<dyn Clock>) + Send + 'static) -> Self {
        let (ready_tx, ready) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = System::new();
            system.block_on(async move {
                start(Arc::new(ManualClock::new()));
                ready_tx.send(System::current()).unwrap();
            });
            system.run().unwrap();
        });
        Self { system: ready.recv().unwrap(), thread: Some(thread) }
    }
}

impl Drop for OwnSystem {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

struct Tree {
    log: mpsc::Receiver<String>,
    escalations: mpsc::Receiver<Escalation>,
    supervisor: Mailbox<SupervisorMsg>,
    addrs: Triggers,
    _system: OwnSystem,
}

impl Tree {
    /// Starts a supervisor with one child per `(name, kind, fault in its first started)`.
    fn start(
        policy: RestartPolicy,
        children: &[(&'static str, RestartKind, Option<Fault>)],
    ) -> Self {
        let (log_tx, log) = mpsc::channel();
        let (esc_tx, escalations) = mpsc::channel();
        let supervisor = Mailbox::new();
        let addrs: Triggers = Arc::default();
        let specs: Vec<ChildSpec> = children
            .iter()
            .enumerate()
            .map(|(slot, &(name, kind, first_start))| {
                let (log, addrs) = (log_tx.clone(), Arc::clone(&addrs));
                let mut starts = 0;
                ChildSpec::new(name, kind, move |link| {
                    starts += 1;
                    if first_start == Some(Fault::FailsToRestart) && starts > 1 {
                        return Err(format!("{name} cannot start again"));
                    }
                    if first_start == Some(Fault::FailsToStartOnce) && starts == 1 {
                        return Err(format!("{name} cannot start yet"));
                    }
                    if first_start == Some(Fault::NeverStarts) {
                        log.send(format!("refused {name}")).unwrap();
                        return Err(format!("{name} cannot start"));
                    }
                    let addr = TestChild {
                        name,
                        link,
                        first_start,
                        log: log.clone(),
                        panic_in_stopped: false,
                    }
                    .start();
                    let mut addrs = addrs.lock().unwrap();
                    if addrs.len() <= slot {
                        addrs.push(addr.clone());
                    } else {
                        addrs[slot] = addr.clone();
                    }
                    Ok(addr.recipient())
                })
            })
            .collect();
        let mailbox = supervisor.clone();
        let system = OwnSystem::start(move |clock| {
            let sup = specs.into_iter().fold(
                Supervisor::new("test", policy, clock, mailbox, move |e| {
                    let _ = esc_tx.send(e);
                }),
                Supervisor::child,
            );
            sup.start();
        });
        Self { log, escalations, supervisor, addrs, _system: system }
    }

    fn expect(&self, line: &str) {
        let got = self.log.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("no {line:?}"));
        assert_eq!(got, line);
    }

    /// Waits for the supervisor to handle everything reported so far.
    fn settle(&self) {
        let answered = self.supervisor.ask_with(SupervisorMsg::Ping, PATIENCE, WHILE_ALIVE);
        assert!(answered.is_some(), "the supervisor did not answer");
    }

    /// The lines logged by the time the supervisor, which gave up, has stopped.
    fn quiet_once_stopped(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + PATIENCE;
        while self.supervisor.actor_alive_or_starting() {
            assert!(std::time::Instant::now() < deadline, "a supervisor that gave up stops");
            std::thread::yield_now();
        }
        self.log.try_iter().collect()
    }

    fn trigger(&self, slot: usize, fault: Fault) {
        self.addrs.lock().unwrap()[slot]
            .try_send(Trigger(fault))
            .expect("one trigger at a time fits");
    }

    /// The next `n` lines, sorted (the order between siblings is not specified).
    fn lines(&self, n: usize) -> Vec<String> {
        let mut got: Vec<String> = (0..n)
            .map(|i| self.log.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("line {i}")))
            .collect();
        got.sort();
        got
    }

    /// Lines logged once the supervisor handled every report and any child it restarted had
    /// its turn to start (a restart is synchronous in the supervisor; the child's `started`
    /// runs on the next turn of the arbiter, before a second ping is answered).
    fn quiet(&self) -> Vec<String> {
        self.settle();
        self.settle();
        self.log.try_iter().collect()
    }
}

fn policy(strategy: Strategy, restarts_max: u32) -> RestartPolicy {
    RestartPolicy {
        strategy,
        intensity: Intensity { restarts_max, window_ms: 1_000 },
        backoff: Backoff { min_ms: 0, max_ms: 0 },
    }
}

#[test]
fn faults_in_started_and_handlers_restart_per_restart_kind() {
    let faults = [
        Fault::PanicInStarted,
        Fault::ErrorInStarted,
        Fault::PanicInHandler,
        Fault::ErrorInHandler,
    ];
    for kind in [RestartKind::Permanent, RestartKind::Transient, RestartKind::Temporary] {
        for fault in faults {
            let in_started = matches!(fault, Fault::PanicInStarted | Fault::ErrorInStarted);
            let tree = Tree::start(
                policy(Strategy::OneForOne, 5),
                &[("c", kind, Some(fault).filter(|_| in_started))],
            );
            tree.expect("start c 1");
            if !in_started {
                tree.trigger(0, fault);
            }
            tree.expect("stop c 1");
            if kind == RestartKind::Temporary {
                assert_eq!(tree.quiet(), Vec::<String>::new(), "{fault:?}");
            } else {
                tree.expect("start c 2");
            }
        }
    }
}

#[test]
fn a_child_that_dies_of_a_panic_outside_guarded_is_restarted_per_restart_kind() {
    for fault in [Fault::PanicUnguarded, Fault::PanicInStopped] {
        for kind in [RestartKind::Permanent, RestartKind::Transient, RestartKind::Temporary] {
            let tree = Tree::start(policy(Strategy::OneForOne, 5), &[("c", kind, None)]);
            tree.expect("start c 1");
            tree.trigger(0, fault);
            if fault == Fault::PanicUnguarded {
                tree.expect("stop c 1");
            }
            // An abnormal exit either way: a transient child is restarted too.
            if kind == RestartKind::Temporary {
                assert_eq!(tree.quiet(), Vec::<String>::new(), "{fault:?} {kind:?}");
            } else {
                tree.expect("start c 2");
            }
        }
    }
}

#[test]
fn a_normal_stop_restarts_only_permanent_children() {
    for kind in [RestartKind::Permanent, RestartKind::Transient, RestartKind::Temporary] {
        let tree = Tree::start(policy(Strategy::OneForOne, 5), &[("c", kind, None)]);
        tree.expect("start c 1");
        tree.trigger(0, Fault::StopNormally);
        tree.expect("stop c 1");
        if kind == RestartKind::Permanent {
            tree.expect("start c 2");
        } else {
            assert_eq!(tree.quiet(), Vec::<String>::new(), "{kind:?}");
        }
    }
}

#[test]
fn n_restarts_in_the_window_survive_and_one_more_escalates() {
    let n = 3;
    let tree = Tree::start(policy(Strategy::OneForOne, n), &[("c", RestartKind::Permanent, None)]);
    tree.expect("start c 1");
    for i in 1..=n {
        tree.trigger(0, Fault::PanicInHandler);
        tree.expect(&format!("stop c {i}"));
        tree.expect(&format!("start c {}", i + 1));
    }
    assert!(tree.escalations.try_recv().is_err(), "{n} restarts are within the intensity");
    tree.trigger(0, Fault::PanicInHandler);
    let escalation = tree.escalations.recv_timeout(PATIENCE).expect("escalated");
    assert_eq!(escalation.child, "c");
    assert_eq!(escalation.reason, ExitReason::Panicked("boom in handler".into()));
    let after = tree.quiet_once_stopped();
    assert!(!after.iter().any(|l| l.starts_with("start")), "no restart after escalation");
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_the_ones_after_it() {
    let children = [
        ("a", RestartKind::Permanent, None),
        ("b", RestartKind::Permanent, None),
        ("c", RestartKind::Permanent, None),
    ];
    let tree = Tree::start(policy(Strategy::RestForOne, 5), &children);
    for name in ["a", "b", "c"] {
        tree.expect(&format!("start {name} 1"));
    }
    tree.trigger(1, Fault::ErrorInHandler);
    assert_eq!(tree.lines(4), ["start b 2", "start c 3", "stop b 1", "stop c 1"]);
    assert_eq!(tree.quiet(), Vec::<String>::new(), "a is left alone");
}

#[test]
fn a_temporary_child_that_cannot_start_again_leaves_the_rest_of_its_set_to_restart() {
    let children = [
        ("a", RestartKind::Permanent, None),
        ("b", RestartKind::Temporary, Some(Fault::FailsToRestart)),
        ("c", RestartKind::Permanent, None),
    ];
    let tree = Tree::start(policy(Strategy::RestForOne, 5), &children);
    for name in ["a", "b", "c"] {
        tree.expect(&format!("start {name} 1"));
    }
    tree.trigger(0, Fault::ErrorInHandler);
    // b fails to start and is not restarted; c, after it, still is.
    let lines = tree.lines(5);
    assert_eq!(lines, ["start a 2", "start c 3", "stop a 1", "stop b 1", "stop c 1"]);
    assert!(tree.escalations.try_recv().is_err());
}

#[test]
fn a_sibling_that_ended_for_good_is_not_brought_back_by_a_restart_that_covers_it() {
    for (kind, strategy) in [
        (RestartKind::Temporary, Strategy::RestForOne),
        (RestartKind::Transient, Strategy::OneForAll),
    ] {
        let children = [("a", RestartKind::Permanent, None), ("b", kind, None)];
        let tree = Tree::start(policy(strategy, 5), &children);
        tree.expect("start a 1");
        tree.expect("start b 1");
        tree.trigger(1, Fault::StopNormally);
        tree.expect("stop b 1");
        tree.settle();
        tree.trigger(0, Fault::ErrorInHandler);
        assert_eq!(tree.lines(2), ["start a 2", "stop a 1"], "{kind:?}, {strategy:?}");
        assert_eq!(tree.quiet(), Vec::<String>::new(), "{kind:?}: b stays ended");
    }
}

#[test]
fn a_sibling_stopped_for_a_restart_still_to_come_is_restarted_by_a_second_failure_too() {
    let children = [
        ("x", RestartKind::Permanent, None),
        ("a", RestartKind::Permanent, None),
        ("b", RestartKind::Transient, None),
    ];
    let backoff = Backoff { min_ms: 50, max_ms: 50 };
    let tree = Tree::start(RestartPolicy { backoff, ..policy(Strategy::RestForOne, 5) }, &children);
    for name in ["x", "a", "b"] {
        tree.expect(&format!("start {name} 1"));
    }
    // a's restart, and b's with it, wait out the backoff: b is stopped meanwhile.
    tree.trigger(1, Fault::ErrorInHandler);
    assert_eq!(tree.lines(2), ["stop a 1", "stop b 1"]);
    tree.settle();
    // x's restart covers a and b again: b, stopped for a restart, has not ended for good.
    tree.trigger(0, Fault::ErrorInHandler);
    let mut lines = Vec::new();
    while !lines.iter().any(|l| l == "start x 2") {
        lines.extend(tree.lines(1));
    }
    lines.extend(tree.quiet());
    let starts =
        |name: &str| lines.iter().filter(|l| l.starts_with(&format!("start {name}"))).count();
    assert_eq!((starts("a"), starts("b")), (2, 2), "a and b restarted by each set: {lines:?}");
}

#[test]
fn a_first_start_that_fails_restarts_the_siblings_after_it_once_each() {
    let children = [
        ("a", RestartKind::Permanent, Some(Fault::FailsToStartOnce)),
        ("b", RestartKind::Permanent, None),
    ];
    let tree = Tree::start(policy(Strategy::RestForOne, 5), &children);
    tree.expect("start a 2");
    tree.expect("start b 1");
    assert_eq!(tree.quiet(), Vec::<String>::new(), "b is started once, not again");
}

#[test]
fn a_first_start_that_fails_with_a_backoff_leaves_the_siblings_after_it_to_its_restart() {
    let children = [
        ("a", RestartKind::Permanent, Some(Fault::FailsToStartOnce)),
        ("b", RestartKind::Permanent, None),
    ];
    for strategy in [Strategy::RestForOne, Strategy::OneForAll] {
        let backoff = Backoff { min_ms: 20, max_ms: 20 };
        let tree = Tree::start(RestartPolicy { backoff, ..policy(strategy, 5) }, &children);
        tree.expect("start a 2");
        tree.expect("start b 1");
        assert_eq!(tree.quiet(), Vec::<String>::new(), "{strategy:?}: b is started once");
    }
}

#[test]
fn a_temporary_child_that_failed_to_start_in_an_earlier_siblings_restart_is_not_started_again() {
    let children = [
        ("a", RestartKind::Permanent, Some(Fault::FailsToStartOnce)),
        ("b", RestartKind::Temporary, Some(Fault::NeverStarts)),
    ];
    let tree = Tree::start(policy(Strategy::RestForOne, 5), &children);
    // a's restart starts b, which fails: a temporary child is never started again.
    assert_eq!(tree.lines(2), ["refused b", "start a 2"]);
    assert_eq!(tree.quiet(), Vec::<String>::new(), "b's start is tried once");
}

#[test]
fn an_exit_report_naming_no_child_is_ignored_and_the_supervisor_still_restarts_its_own() {
    let tree = Tree::start(policy(Strategy::OneForOne, 5), &[("a", RestartKind::Permanent, None)]);
    tree.expect("start a 1");
    let stray = SupervisorMsg::Exited { child: 7, incarnation: 1, reason: ExitReason::Normal };
    assert!(tree.supervisor.post(stray).is_ok());
    assert_eq!(tree.quiet(), Vec::<String>::new(), "nothing restarted for it");
    tree.trigger(0, Fault::PanicInHandler);
    assert_eq!(tree.lines(2), ["start a 2", "stop a 1"], "the supervisor lives on");
}

#[test]
fn one_for_all_restarts_every_child() {
    let children = [("a", RestartKind::Permanent, None), ("b", RestartKind::Transient, None)];
    let tree = Tree::start(policy(Strategy::OneForAll, 5), &children);
    tree.expect("start a 1");
    tree.expect("start b 1");
    tree.trigger(1, Fault::PanicInHandler);
    assert_eq!(tree.lines(4), ["start a 3", "start b 2", "stop a 1", "stop b 1"]);
}

#[test]
fn a_child_supervisor_escalates_to_its_parent_which_restarts_it_then_gives_up() {
    let (log_tx, log) = mpsc::channel();
    let (esc_tx, escalations) = mpsc::channel();
    let inboxes: Arc<Mutex<Vec<Mailbox<SupervisorMsg>>>> = Arc::default();
    let started_inboxes = Arc::clone(&inboxes);
    let system = OwnSystem::start(move |clock| {
        let inner_clock = Arc::clone(&clock);
        // The inner supervisor tolerates no restart: its child's failure escalates at once,
        // and it reports that to the parent as its own abnormal exit.
        let inner = ChildSpec::new("inner", RestartKind::Permanent, move |link: ChildLink| {
            let log = log_tx.clone();
            let child = ChildSpec::new("c", RestartKind::Permanent, move |child_link| {
                let fault = Some(Fault::PanicInStarted);
                let c = TestChild {
                    name: "c",
                    link: child_link,
                    first_start: fault,
                    log: log.clone(),
                    panic_in_stopped: false,
                };
                Ok(c.start().recipient())
            });
            let inbox = Mailbox::new();
            started_inboxes.lock().unwrap().push(inbox.clone());
            let sup = Supervisor::new(
                "inner",
                policy(Strategy::OneForOne, 0),
                Arc::clone(&inner_clock),
                inbox,
                move |e| link.exit(ExitReason::Error(format!("escalated: {}", e.child))),
            )
            .child(child);
            Ok(sup.start().recipient())
        });
        Supervisor::new(
            "parent",
            policy(Strategy::OneForOne, 2),
            clock,
            Mailbox::new(),
            move |e| {
                let _ = esc_tx.send(e);
            },
        )
        .child(inner)
        .start();
    });
    let escalation = escalations.recv_timeout(PATIENCE).expect("the parent gives up");
    assert_eq!(escalation.child, "inner");
    assert_eq!(escalation.reason, ExitReason::Error("escalated: c".into()));
    let starts = log.try_iter().filter(|l| l == "start c 1").count();
    assert_eq!(starts, 3, "the parent restarted the inner supervisor twice before giving up");
    // Each inner supervisor that gave up stopped: none is left alive with nothing to do.
    let inboxes = inboxes.lock().unwrap().clone();
    assert_eq!(inboxes.len(), 3);
    let deadline = std::time::Instant::now() + PATIENCE;
    while inboxes.iter().any(Mailbox::actor_alive_or_starting) {
        assert!(std::time::Instant::now() < deadline, "a supervisor that gave up lives on");
        std::thread::yield_now();
    }
    drop(system);
}

#[test]
fn a_supervisor_that_escalates_while_starting_starts_no_more_children() {
    let (escalated, escalations) = mpsc::channel();
    let (b_tx, b_started) = mpsc::channel::<()>();
    let mailbox = Mailbox::new();
    let asked = mailbox.clone();
    let system = OwnSystem::start(move |clock| {
        let refused = |_| Err("a cannot start".to_owned());
        let b = move |_| {
            let _ = b_tx.send(());
            Err("b".to_owned())
        };
        Supervisor::new("test", policy(Strategy::OneForOne, 0), clock, mailbox, move |e| {
            let _ = escalated.send(e);
        })
        .child(ChildSpec::new("a", RestartKind::Permanent, refused))
        .child(ChildSpec::new("b", RestartKind::Permanent, b))
        .start();
    });
    let escalation = escalations.recv_timeout(PATIENCE).expect("a's failed start escalates");
    assert_eq!(escalation.child, "a");
    // Stopped once its `started` ran whole: b was started by then, or never is.
    assert_eq!(asked.ask_with(SupervisorMsg::Ping, PATIENCE, WHILE_ALIVE), None);
    assert!(!asked.actor_alive_or_starting(), "a supervisor that gave up stops");
    assert!(b_started.try_recv().is_err(), "b was started by a supervisor that gave up");
    assert!(escalations.try_recv().is_err(), "one escalation");
    drop(system);
}

#[test]
fn a_childs_backoff_doubles_with_its_own_restarts_not_its_siblings() {
    let policy = RestartPolicy {
        strategy: Strategy::OneForOne,
        intensity: Intensity { restarts_max: 10, window_ms: 1_000 },
        backoff: Backoff { min_ms: 10, max_ms: 1_000 },
    };
    let never_started = |_: ChildLink| Err::<Recipient<StopChild>, _>("not started".to_owned());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let mut sup = Supervisor::new("backoff", policy, clock, Mailbox::new(), |_| {})
        .child(ChildSpec::new("flapping", RestartKind::Permanent, never_started))
        .child(ChildSpec::new("steady", RestartKind::Permanent, never_started));
    let flapping: Vec<u64> = (0..3).map(|i| sup.backoff_ms(0, i * 10)).collect();
    assert_eq!(flapping, [10, 20, 40]);
    assert_eq!(sup.backoff_ms(1, 40), 10, "a sibling's first restart waits the least");
    assert_eq!(sup.backoff_ms(0, 2_000), 10, "restarts older than the window no longer count");
}

#[test]
fn an_escalation_hook_that_panics_leaves_the_rest_of_the_supervisors_batch_handled() {
    let mailbox = Mailbox::new();
    let (ack, acked) = mpsc::channel();
    // Queued before the supervisor starts, so that its first turn takes both at once.
    let reason = ExitReason::Error("gone".to_owned());
    assert!(mailbox.post(SupervisorMsg::Exited { child: 0, incarnation: 1, reason }).is_ok());
    assert!(mailbox.post(SupervisorMsg::Ping(ack)).is_ok());
    let (log, _lines) = mpsc::channel();
    let system = OwnSystem::start(move |clock| {
        let start = move |link| {
            let (log, panic_in_stopped) = (log.clone(), false);
            let child = TestChild { name: "c", link, first_start: None, log, panic_in_stopped };
            Ok(child.start().recipient())
        };
        let hook = |_| panic!("an escalation hook that panics");
        Supervisor::new("test", policy(Strategy::OneForOne, 0), clock, mailbox, hook)
            .child(ChildSpec::new("c", RestartKind::Permanent, start))
            .start();
    });
    acked.recv_timeout(PATIENCE).expect("the ping behind the exit that escalated is answered");
    drop(system);
}

#[test]
fn a_child_whose_start_keeps_failing_restarts_in_a_loop_until_the_intensity_escalates() {
    const RESTARTS_MAX: u32 = 50_000;
    let (escalated, escalations) = mpsc::channel();
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = Arc::clone(&attempts);
    let system = OwnSystem::start(move |clock| {
        let refused = move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            Err::<Recipient<StopChild>, _>("cannot start".to_owned())
        };
        // A restart per failed start with no backoff: nested, these would overflow the stack.
        let policy = policy(Strategy::OneForOne, RESTARTS_MAX);
        Supervisor::new("test", policy, clock, Mailbox::new(), move |e| {
            let _ = escalated.send(e);
        })
        .child(ChildSpec::new("a", RestartKind::Permanent, refused))
        .start();
    });
    let escalation = escalations.recv_timeout(PATIENCE).expect("the failed starts escalate");
    assert_eq!(escalation.child, "a");
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        RESTARTS_MAX + 1,
        "its first start and each restart"
    );
    drop(system);
}
