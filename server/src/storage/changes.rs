//! Change news for live feeds, delivered in this process: a run's feed is
//! woken only by news of its own run, and the runs list only by changes of
//! state. A hundred feeds watching a hundred busy runs would otherwise each
//! wake for every batch of every run's lines, only to ignore it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{broadcast, watch};

use super::Change;

/// How many changes wait for a slow list feed before it is told to resync.
const LIST_BUFFER: usize = 4096;

/// How far a followed run has come: each number grows when news arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    /// Its state (status, tasks, steps) may have changed.
    pub state: u64,
    /// Its logs may have grown.
    pub logs: u64,
}

/// Where news is delivered (see the module's comment).
#[derive(Debug)]
pub struct Hub {
    /// State changes of any run, and "look again": for lists.
    list: broadcast::Sender<Change>,
    /// The runs somebody follows, each with its versions and how many
    /// follow it: an entry lives as long as one of its followers does.
    /// (The count is kept here, under the lock, because a receiver's own
    /// count drops only after its holder's `Drop` has run.)
    followed: Mutex<HashMap<i64, (watch::Sender<Versions>, usize)>>,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            list: broadcast::Sender::new(LIST_BUFFER),
            followed: Mutex::new(HashMap::new()),
        })
    }

    /// Delivers news to whoever it concerns.
    pub fn deliver(&self, change: Change) {
        let followed = self.followed.lock().unwrap();
        match change {
            Change::Run(id) => {
                if let Some((run, _)) = followed.get(&id) {
                    run.send_modify(|v| {
                        v.state += 1;
                        v.logs += 1;
                    });
                }
                drop(followed);
                let _ = self.list.send(change);
            }
            Change::Logs(id) => {
                if let Some((run, _)) = followed.get(&id) {
                    run.send_modify(|v| v.logs += 1);
                }
            }
            Change::All => {
                for (run, _) in followed.values() {
                    run.send_modify(|v| {
                        v.state += 1;
                        v.logs += 1;
                    });
                }
                drop(followed);
                let _ = self.list.send(change);
            }
        }
    }

    /// News of every run's state from now on (`Change::Run` and
    /// `Change::All`, never `Change::Logs`).
    pub fn subscribe_list(&self) -> broadcast::Receiver<Change> {
        self.list.subscribe()
    }

    /// Follows one run: news of it from now on.
    pub fn follow(self: &Arc<Self>, run_id: i64) -> Following {
        let mut followed = self.followed.lock().unwrap();
        let (run, followers) = followed
            .entry(run_id)
            .or_insert_with(|| (watch::Sender::new(Versions::default()), 0));
        *followers += 1;
        let news = run.subscribe();
        Following {
            hub: Arc::downgrade(self),
            run_id,
            news,
        }
    }

    /// Runs followed now (for tests).
    #[cfg(test)]
    fn followed(&self) -> usize {
        self.followed.lock().unwrap().len()
    }
}

/// One follower of a run (from `Hub::follow`). News is never lost and
/// never piles up: however much arrived since it last looked, a follower
/// sees only that the versions moved.
#[derive(Debug)]
pub struct Following {
    hub: Weak<Hub>,
    run_id: i64,
    news: watch::Receiver<Versions>,
}

impl Following {
    /// Where the run's news stands now: a follower that starts from here
    /// is woken only by what comes next.
    pub fn now(&self) -> Versions {
        *self.news.borrow()
    }

    /// Waits for news of the run; answers whether its state may have
    /// changed (else only its logs grew). The hub gone (the server
    /// stopping) is an error.
    pub async fn changed(&mut self, seen: &mut Versions) -> Result<bool, watch::error::RecvError> {
        loop {
            let now = *self.news.borrow_and_update();
            if now != *seen {
                let state = now.state != seen.state;
                *seen = now;
                return Ok(state);
            }
            self.news.changed().await?;
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut followed = hub.followed.lock().unwrap();
        if let Some((_, followers)) = followed.get_mut(&self.run_id) {
            *followers -= 1;
            if *followers == 0 {
                followed.remove(&self.run_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_follower_hears_only_its_run_and_loses_nothing() {
        let hub = Hub::new();
        let mut one = hub.follow(1);
        let mut seen = Versions::default();
        hub.deliver(Change::Logs(2));
        hub.deliver(Change::Logs(1));
        hub.deliver(Change::Logs(1));
        assert!(!one.changed(&mut seen).await.unwrap());
        hub.deliver(Change::Run(1));
        assert!(one.changed(&mut seen).await.unwrap());
        hub.deliver(Change::All);
        assert!(one.changed(&mut seen).await.unwrap());
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), one.changed(&mut seen));
        assert!(waiting.await.is_err(), "news of another run woke it");
    }

    #[tokio::test]
    async fn the_list_hears_states_not_logs() {
        let hub = Hub::new();
        let mut list = hub.subscribe_list();
        hub.deliver(Change::Logs(1));
        hub.deliver(Change::Run(1));
        hub.deliver(Change::All);
        assert_eq!(list.recv().await.unwrap(), Change::Run(1));
        assert_eq!(list.recv().await.unwrap(), Change::All);
    }

    #[test]
    fn a_run_is_forgotten_with_its_last_follower() {
        let hub = Hub::new();
        let a = hub.follow(7);
        let b = hub.follow(7);
        drop(a);
        assert_eq!(hub.followed(), 1);
        drop(b);
        assert_eq!(hub.followed(), 0);
    }

    /// Followers of one run that end at once, on several threads (as every
    /// viewer of a run does when it finishes), leave nothing behind.
    #[test]
    fn followers_ending_together_leave_nothing_behind() {
        let hub = Hub::new();
        for round in 0..200 {
            let followers: Vec<Following> = (0..8).map(|_| hub.follow(round)).collect();
            let barrier = Arc::new(std::sync::Barrier::new(followers.len()));
            let threads: Vec<_> = followers
                .into_iter()
                .map(|f| {
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        drop(f);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        assert_eq!(hub.followed(), 0);
    }
}
