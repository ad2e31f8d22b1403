//! The control task over a real Unix socket, without a kernel: requests change what
//! downstream sees only once the change is on disk; a file that cannot be written
//! refuses the change and keeps the overrides as they were.

use std::sync::Arc;

use lvsdr::admin::protocol::{Request, Response};
use lvsdr::model::{AdminState, Desired};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;

fn config() -> Arc<Desired> {
    let text = "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
                [service.check]\ntype = \"none\"\n\
                [[service.real_server]]\naddress = \"10.0.0.11\"\n\
                [[service.real_server]]\naddress = \"10.0.0.12\"\n";
    Arc::new(lvsdr::config::parse(text, "d.toml").expect("config"))
}

async fn ask(socket: &Path, line: &str) -> Response {
    let s = UnixStream::connect(socket).await.expect("connect");
    let (r, mut w) = s.into_split();
    w.write_all(format!("{line}\n").as_bytes())
        .await
        .expect("write");
    let answer = BufReader::new(r)
        .lines()
        .next_line()
        .await
        .expect("read")
        .expect("a line");
    serde_json::from_str(&answer).expect("an answer")
}

struct Running {
    socket: PathBuf,
    desired: watch::Receiver<Arc<Desired>>,
    config: watch::Sender<Arc<Desired>>,
    agents: watch::Sender<AgentDrains>,
    cancel: CancellationToken,
}

fn start(dir: &Path, file: PathBuf) -> Running {
    let socket = dir.join("control.sock");
    let listener = bind(&socket).expect("bound");
    let (config_tx, config_rx) = watch::channel(config());
    let (desired_tx, desired_rx) = watch::channel(config());
    let (_state_tx, state_rx) = watch::channel(ReconcileState::default());
    let (agents_tx, agent_drains) = watch::channel(AgentDrains::new());
    let cancel = CancellationToken::new();
    let control = Control {
        config: config_rx,
        state: state_rx,
        desired: desired_tx,
        overrides: Overrides::default(),
        file,
        agent_drains,
    };
    tokio::spawn(control.run(Some(listener), Allowed { gid: None }, cancel.clone()));
    Running {
        socket,
        desired: desired_rx,
        config: config_tx,
        agents: agents_tx,
        cancel,
    }
}

fn state_of(d: &Desired, i: usize) -> Option<AdminState> {
    d.services[0].real_servers[i]
        .admin
        .as_ref()
        .map(|a| a.state)
}

#[tokio::test]
async fn a_drain_is_kept_then_published_and_a_reload_without_its_server_drops_it() {
    let dir = std::env::temp_dir().join(format!("lvsdr-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("state/admin.json");
    let mut r = start(&dir, file.clone());
    let a = ask(
        &r.socket,
        r#"{"op":"drain","servers":["10.0.0.12"],"reason":"disk"}"#,
    )
    .await;
    assert!(a.ok, "{a:?}");
    assert_eq!(
        state_of(&r.desired.borrow_and_update(), 1),
        Some(AdminState::Drain)
    );
    assert_eq!(state_of(&r.desired.borrow(), 0), None);
    let kept = lvsdr::admin::file::load(&file).expect("kept");
    assert_eq!(kept.overrides.len(), 1);
    assert_eq!(kept.overrides[0].reason, "disk");
    assert_eq!(load(&file), kept, "what a restart loads");
    let a = ask(&r.socket, "{\"op\":\"drain\"").await;
    assert!(a.error.is_some_and(|e| e.contains("not a request")));

    // A reload without 10.0.0.12: the drain goes, from the file too.
    let mut smaller = (*config()).clone();
    std::sync::Arc::make_mut(&mut smaller.services[0])
        .real_servers
        .pop();
    r.config.send_replace(Arc::new(smaller));
    r.desired.changed().await.expect("published");
    assert_eq!(state_of(&r.desired.borrow(), 0), None);
    let gone = support_poll(|| {
        lvsdr::admin::file::load(&file)
            .ok()
            .filter(|o| o.overrides.is_empty())
    })
    .await;
    assert!(gone.is_some(), "the file still has the dropped override");
    r.cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_override_that_cannot_be_kept_is_refused_and_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("lvsdr-control-ro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // Its folder is a file: nothing can be written there.
    std::fs::write(dir.join("blocked"), "").expect("write");
    let r = start(&dir, dir.join("blocked/admin.json"));
    let a = ask(&r.socket, r#"{"op":"disable","servers":["10.0.0.11"]}"#).await;
    assert!(!a.ok);
    assert!(
        a.error
            .as_deref()
            .is_some_and(|e| e.starts_with("not done: the overrides file")),
        "{a:?}"
    );
    assert_eq!(state_of(&r.desired.borrow(), 0), None);
    let listed = ask(&r.socket, r#"{"op":"list"}"#).await;
    assert!(listed.ok && listed.overrides.is_empty(), "{listed:?}");
    r.cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real server's own drain, heard from its agent: marked on every server of that
/// host, kept in the file (a restarted director has it before it hears the agent
/// again), yielding to an operator's drain, lifted by the agent's ready.
#[tokio::test]
async fn an_agents_drain_is_marked_kept_and_lifted() {
    let dir = std::env::temp_dir().join(format!("lvsdr-control-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("admin.json");
    let mut r = start(&dir, file.clone());
    let text = "[agents]\nca = \"/ca.pem\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\
                [[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
                [service.check]\ntype = \"none\"\n\
                [[service.real_server]]\naddress = \"10.0.0.11\"\n\
                [[service.real_server]]\naddress = \"10.0.0.12\"\n";
    r.config.send_replace(Arc::new(
        lvsdr::config::parse(text, "d.toml").expect("config"),
    ));
    r.desired.changed().await.expect("published");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let deploy = lvsdr::agent_api::AgentDrain {
        reason: "deploy 4711".into(),
        since: 7,
    };
    r.agents.send_replace(AgentDrains::from([
        (ip("10.0.0.11"), Some(deploy.clone())),
        (ip("10.0.0.12"), None),
    ]));
    r.desired.changed().await.expect("published");
    {
        let d = r.desired.borrow_and_update();
        let a = d.services[0].real_servers[0].admin.clone().expect("marked");
        assert_eq!(
            (a.state, a.agent, a.reason.as_str()),
            (AdminState::Drain, true, "deploy 4711")
        );
        assert_eq!(state_of(&d, 1), None);
    }
    assert_eq!(
        load(&file).agents.get(&ip("10.0.0.11")),
        Some(&deploy),
        "not kept"
    );
    // An operator's drain of the same server stays its own (and outlives the agent's).
    let a = ask(
        &r.socket,
        r#"{"op":"drain","servers":["10.0.0.11"],"reason":"disk"}"#,
    )
    .await;
    assert!(a.ok, "{a:?}");
    let operator = |d: &Desired| d.services[0].real_servers[0].admin.clone().expect("marked");
    assert!(!operator(&r.desired.borrow_and_update()).agent);
    r.agents
        .send_replace(AgentDrains::from([(ip("10.0.0.11"), None)]));
    let lifted = support_poll(|| load(&file).agents.is_empty().then_some(())).await;
    assert!(lifted.is_some(), "ready did not lift the kept drain");
    let d = r.desired.borrow_and_update().clone();
    assert_eq!(
        operator(&d).reason,
        "disk",
        "ready lifted the operator's drain"
    );
    // Not heard (absent from the map) is not ready: a kept drain stays.
    r.agents
        .send_replace(AgentDrains::from([(ip("10.0.0.12"), Some(deploy.clone()))]));
    let kept = support_poll(|| load(&file).agents.get(&ip("10.0.0.12")).cloned()).await;
    assert_eq!(kept, Some(deploy));
    r.agents.send_replace(AgentDrains::new());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        load(&file).agents.contains_key(&ip("10.0.0.12")),
        "an agent not heard lost its drain"
    );
    r.cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `f` every 10 ms for up to 10 s.
async fn support_poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..1000 {
        if let Some(v) = f() {
            return Some(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

#[test]
fn requests_parse_as_the_module_documents_them() {
    let r: Request =
        serde_json::from_str(r#"{"op":"weight","servers":["10.0.0.11:80"],"weight":"50%"}"#)
            .expect("weight");
    assert_eq!(r.op(), "weight");
}
