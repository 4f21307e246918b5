//! The decisions of the docker target over what it found: the proxy's live upstream and the
//! environment's containers ([`Found`]). Which colour is live and which one a release starts
//! ([`layout`]), what a recovery after a killed deploy removes or routes back to
//! ([`plan_recovery`]), and what reconciliation does when the live colour is gone
//! ([`plan_live`]). Pure: the I/O modules load these inputs and carry the answers out.

use std::net::SocketAddr;

use super::{Colour, Role, loopback};
use crate::release::Phase;

/// One container of an environment, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub colour: Option<Colour>,
    pub release: Option<String>,
    pub role: Option<Role>,
    pub running: bool,
    /// The host port published on 127.0.0.1 (only a running container has one).
    pub port: Option<u16>,
}

impl Found {
    /// Where the proxy reaches it, while it runs.
    pub fn upstream(&self) -> Option<SocketAddr> {
        self.port.filter(|_| self.running).map(loopback)
    }

    /// Whether the proxy's `upstream` is this container.
    pub fn serves(&self, upstream: Option<SocketAddr>) -> bool {
        upstream.is_some() && self.upstream() == upstream
    }
}

/// An environment before a release: the container that serves (if one does) and the colour
/// the release starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub live: Option<Found>,
    pub candidate: Colour,
}

/// The live container is the one the proxy's upstream reaches; the release starts the other
/// colour. With none live it starts a colour no running container holds, blue first.
pub fn layout(upstream: Option<SocketAddr>, found: &[Found]) -> Layout {
    let live = found.iter().find(|f| f.serves(upstream)).cloned();
    let candidate = match live.as_ref().and_then(|l| l.colour) {
        Some(c) => c.other(),
        None => free_colour(found, None),
    };
    Layout { live, candidate }
}

/// A colour no running container holds (and that is not `avoid`), blue first; blue when both
/// are held.
fn free_colour(found: &[Found], avoid: Option<Colour>) -> Colour {
    let held = |c: Colour| found.iter().any(|f| f.running && f.colour == Some(c));
    [Colour::Blue, Colour::Green]
        .into_iter()
        .find(|&c| Some(c) != avoid && !held(c))
        .or_else(|| avoid.map(Colour::other))
        .unwrap_or(Colour::Blue)
}

/// A deploy that a crash interrupted, as the coordinator recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub release: String,
    /// The last phase it recorded.
    pub phase: Phase,
}

/// What a recovery does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// Send traffic back to this container (an interrupted switch or observe).
    pub route_back: Option<Found>,
    /// Stop and remove these.
    pub remove: Vec<Found>,
    /// The colour that serves afterwards, if any.
    pub live: Option<Colour>,
}

/// After a killed deploy, nothing is resumed half-way (as [`crate::release::recover`] says):
/// the container the proxy routes to stays and every other container of the environment goes
/// (abandoned candidates, an old colour whose retirement did not finish). The one exception is
/// a release interrupted in its switch or observe phase that the proxy already routes to: the
/// previous release serves again (if its container still runs) and the interrupted one goes.
///
/// Only for an environment no deploy is running on: every container not live is removed.
pub fn plan_recovery(
    upstream: Option<SocketAddr>,
    found: &[Found],
    interrupted: Option<&Interrupted>,
) -> RecoveryPlan {
    let live = found.iter().find(|f| f.serves(upstream));
    let back = match (live, interrupted) {
        (Some(l), Some(i))
            if matches!(i.phase, Phase::Switch | Phase::Observe)
                && l.release.as_deref() == Some(i.release.as_str()) =>
        {
            found
                .iter()
                .find(|f| f.upstream().is_some() && f.release.as_deref() != Some(&i.release))
        }
        _ => None,
    };
    let keep = back.or(live);
    RecoveryPlan {
        route_back: back.cloned(),
        remove: found
            .iter()
            .filter(|f| keep.is_none_or(|k| k.id != f.id))
            .cloned()
            .collect(),
        live: keep.and_then(|k| k.colour),
    }
}

/// What reconciliation does for the release that should be live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveAction {
    /// Its container runs and the proxy routes to it: nothing.
    Serving(Found),
    /// Its container runs but the proxy does not route to it: check it, then route to it.
    Reroute(Found),
    /// Its container is gone or dead: start it again on `colour`, first removing `replace`
    /// (the dead container of that name), check it, route to it.
    Restart {
        colour: Colour,
        replace: Option<Found>,
    },
}

/// Decides how `release` comes to serve again. A restart reuses the colour of the release's
/// own (dead) container, else takes a colour that neither serves nor runs; it never replaces
/// the container the proxy routes to.
pub fn plan_live(upstream: Option<SocketAddr>, found: &[Found], release: &str) -> LiveAction {
    let own = |f: &&Found| f.release.as_deref() == Some(release);
    if let Some(f) = found.iter().filter(own).find(|f| f.serves(upstream)) {
        return LiveAction::Serving(f.clone());
    }
    if let Some(f) = found.iter().filter(own).find(|f| f.upstream().is_some()) {
        return LiveAction::Reroute(f.clone());
    }
    let serving = found
        .iter()
        .find(|f| f.serves(upstream))
        .and_then(|f| f.colour);
    let colour = found
        .iter()
        .filter(own)
        .filter_map(|f| f.colour)
        .find(|&c| Some(c) != serving)
        .unwrap_or_else(|| free_colour(found, serving));
    LiveAction::Restart {
        colour,
        replace: found.iter().find(|f| f.colour == Some(colour)).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, colour: Colour, release: &str, port: Option<u16>) -> Found {
        Found {
            id: id.into(),
            name: format!("moat-prod-{colour}"),
            colour: Some(colour),
            release: Some(release.into()),
            role: Some(Role::Candidate),
            running: port.is_some(),
            port,
        }
    }

    fn up(port: u16) -> Option<SocketAddr> {
        Some(loopback(port))
    }

    #[test]
    fn the_live_colour_is_the_upstream_and_a_release_starts_the_other() {
        let blue = c("b", Colour::Blue, "1", Some(4000));
        let green = c("g", Colour::Green, "0", Some(4001));
        let l = layout(up(4000), &[blue.clone(), green.clone()]);
        assert_eq!(l.live, Some(blue));
        assert_eq!(l.candidate, Colour::Green);
        let l = layout(up(4001), std::slice::from_ref(&green));
        assert_eq!(l.candidate, Colour::Blue);
    }

    #[test]
    fn with_nothing_live_a_release_starts_a_free_colour_blue_first() {
        assert_eq!(layout(None, &[]).candidate, Colour::Blue);
        let blue = c("b", Colour::Blue, "1", Some(4000));
        let l = layout(None, std::slice::from_ref(&blue));
        assert_eq!((l.live, l.candidate), (None, Colour::Green));
        // An upstream no container answers (its container is gone): not live, free colour.
        let l = layout(up(9), &[blue]);
        assert_eq!((l.live, l.candidate), (None, Colour::Green));
        // A stopped container does not hold its colour, and serves nothing.
        let dead = c("b", Colour::Blue, "1", None);
        assert_eq!(layout(up(4000), &[dead]).candidate, Colour::Blue);
    }

    #[test]
    fn a_recovery_keeps_the_live_container_and_removes_every_other() {
        let blue = c("b", Colour::Blue, "1", Some(4000));
        let green = c("g", Colour::Green, "2", Some(4001));
        let p = plan_recovery(up(4000), &[blue.clone(), green.clone()], None);
        assert_eq!(p.route_back, None);
        assert_eq!(p.remove, vec![green.clone()]);
        assert_eq!(p.live, Some(Colour::Blue));
        // Interrupted before the switch: the same.
        let verify = Interrupted {
            release: "2".into(),
            phase: Phase::Verify,
        };
        assert_eq!(
            plan_recovery(up(4000), &[blue.clone(), green.clone()], Some(&verify)),
            p
        );
        // Nothing live (a first deploy killed in verify): everything goes.
        let p = plan_recovery(None, std::slice::from_ref(&green), Some(&verify));
        assert_eq!((p.remove, p.live), (vec![green], None));
    }

    #[test]
    fn a_recovery_of_an_interrupted_switch_or_observe_routes_back() {
        let blue = c("b", Colour::Blue, "1", Some(4000));
        let green = c("g", Colour::Green, "2", Some(4001));
        for phase in [Phase::Switch, Phase::Observe] {
            let i = Interrupted {
                release: "2".into(),
                phase,
            };
            let p = plan_recovery(up(4001), &[blue.clone(), green.clone()], Some(&i));
            assert_eq!(p.route_back, Some(blue.clone()), "{phase:?}");
            assert_eq!(p.remove, vec![green.clone()]);
            assert_eq!(p.live, Some(Colour::Blue));
            // The previous colour no longer runs: the interrupted release is all there is.
            let dead_blue = c("b", Colour::Blue, "1", None);
            let p = plan_recovery(up(4001), &[dead_blue.clone(), green.clone()], Some(&i));
            assert_eq!(p.route_back, None);
            assert_eq!(p.remove, [dead_blue]);
            assert_eq!(p.live, Some(Colour::Green));
        }
        // Interrupted in retire: the new release is live; the old colour's retirement ends.
        let retire = Interrupted {
            release: "2".into(),
            phase: Phase::Retire,
        };
        let p = plan_recovery(up(4001), &[blue.clone(), green.clone()], Some(&retire));
        assert_eq!((p.route_back, p.remove), (None, vec![blue]));
    }

    #[test]
    fn reconciliation_leaves_a_serving_release_alone() {
        let blue = c("b", Colour::Blue, "1", Some(4000));
        assert_eq!(
            plan_live(up(4000), std::slice::from_ref(&blue), "1"),
            LiveAction::Serving(blue.clone())
        );
        assert_eq!(
            plan_live(None, std::slice::from_ref(&blue), "1"),
            LiveAction::Reroute(blue)
        );
    }

    #[test]
    fn reconciliation_restarts_a_gone_or_dead_release_never_over_what_serves() {
        // Gone entirely: a free colour.
        assert_eq!(
            plan_live(up(4000), &[], "1"),
            LiveAction::Restart {
                colour: Colour::Blue,
                replace: None
            }
        );
        // Dead: its own colour again, replacing the dead container.
        let dead = c("b", Colour::Green, "1", None);
        assert_eq!(
            plan_live(up(4000), std::slice::from_ref(&dead), "1"),
            LiveAction::Restart {
                colour: Colour::Green,
                replace: Some(dead)
            }
        );
        // Another release serves on blue (the proxy drifted): green, replacing what is there.
        let other = c("x", Colour::Blue, "9", Some(4002));
        let stale = c("y", Colour::Green, "8", None);
        assert_eq!(
            plan_live(up(4002), &[other.clone(), stale.clone()], "1"),
            LiveAction::Restart {
                colour: Colour::Green,
                replace: Some(stale)
            }
        );
        // The release's dead container sits on the serving colour's name: the other one.
        let own_dead = c("b2", Colour::Blue, "1", None);
        assert_eq!(
            plan_live(up(4002), &[other, own_dead], "1"),
            LiveAction::Restart {
                colour: Colour::Green,
                replace: None
            }
        );
    }
}
