//! Real-server agents in the lab: their certificates and configs, and long-lived
//! connections through the VIP to watch while servers drain.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use super::director::{write_file, NOBODY};
use super::lab::Lab;

/// The agent binary, beside the director's `bin`.
pub fn agent_bin(bin: &str) -> String {
    let p = Path::new(bin).with_file_name("lvsdr-agent");
    assert!(
        p.exists(),
        "{} is not built (cargo test --workspace builds it)",
        p.display()
    );
    p.display().to_string()
}

/// The certificates of the director and the lab's agents (in the lab's folder).
pub struct Pki(pub PathBuf);

impl Pki {
    pub fn new(lab: &Lab) -> Pki {
        let pki = PathBuf::from(format!("/tmp/lvsdr-e2e-{}", lab.tag)).join("pki");
        let _ = std::fs::remove_dir_all(&pki);
        let agents: Vec<String> = (1..=lab.servers.len()).map(|i| lab.rip(i)).collect();
        lvsdr_pki::init(&pki, &agents).expect("pki");
        // The director runs as nobody: its key is readable to it, as LoadCredential
        // makes it.
        super::sh(&format!(
            "chown {NOBODY} {0}/director.key {0}/director.pem {0}/ca.pem",
            pki.display()
        ));
        Pki(pki)
    }

    /// Agent `i`'s config file.
    pub fn agent_config(&self, lab: &Lab, i: usize) -> PathBuf {
        let rip = lab.rip(i);
        write_file(
            lab,
            &format!("agent{i}.toml"),
            &format!(
                "[agent]\nlisten = \"0.0.0.0:9181\"\nstate_file = \"/tmp/lvsdr-e2e-{0}/state{i}.json\"\n\
                 control_socket = \"/tmp/lvsdr-e2e-{0}/agent{i}.sock\"\n\
                 [agent.tls]\ncert = \"{p}/agent-{rip}.pem\"\nkey = \"{p}/agent-{rip}.key\"\nclient_ca = \"{p}/ca.pem\"\n",
                lab.tag,
                p = self.0.display()
            ),
        )
    }

    /// The director's `[agents]` section (`require = true`, the default).
    pub fn agents_section(&self) -> String {
        format!(
            "[agents]\nca = \"{p}/ca.pem\"\ncert = \"{p}/director.pem\"\nkey = \"{p}/director.key\"\nrequire = true\npush_interval = \"1s\"\nconfirm_grace = \"10s\"\n",
            p = self.0.display()
        )
    }
}

/// A long-lived connection through the VIP, pinged line by line.
pub struct Echo {
    w: TcpStream,
    r: BufReader<TcpStream>,
    n: u32,
}

impl Echo {
    pub fn open(lab: &Lab) -> Echo {
        let w = lab.connect(7);
        let r = BufReader::new(w.try_clone().expect("clone"));
        Echo { w, r, n: 0 }
    }

    pub fn ping(&mut self) -> Result<(), String> {
        self.n += 1;
        writeln!(self.w, "ping {}", self.n).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.r.read_line(&mut line).map_err(|e| e.to_string())?;
        (line == format!("ping {}\n", self.n))
            .then_some(())
            .ok_or(line)
    }
}

/// What a lab with agents runs: "rsN" on port 80 and a line echo on port 7 on each
/// real server, and an agent on each (the director's `[agents]` from `pki`).
pub struct AgentLab {
    pub servers: Vec<super::lab::Server>,
    pub pki: Pki,
    pub agents: Vec<super::director::Proc>,
}

impl AgentLab {
    pub fn start(lab: &Lab, director_bin: &str) -> AgentLab {
        use super::lab::Server;
        let servers = (0..lab.servers.len())
            .flat_map(|i| {
                [
                    Server::http(&lab.servers[i], 80, &format!("rs{}", i + 1)),
                    Server::echo(&lab.servers[i], 7),
                ]
            })
            .collect();
        let pki = Pki::new(lab);
        let bin = agent_bin(director_bin);
        let agents = (1..=lab.servers.len())
            .map(|i| super::director::start_agent(lab, &bin, i, &pki.agent_config(lab, i)))
            .collect();
        AgentLab {
            servers,
            pki,
            agents,
        }
    }
}
