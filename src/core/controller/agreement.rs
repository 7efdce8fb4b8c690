//! How an owner device keeps the network's providers in agreement on guest access: management
//! requests to each provider of the network through the tunnel, and the sync of a provider that
//! comes (back) online with what the others hold.

use crate::core::sync::Locked;
use std::collections::BTreeMap;
use std::sync::Arc;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use super::guest::no_tunnel;
use super::owner::{empty_acl, merge_grants, revoke_version};
use super::Shared;
use crate::core::access::{
    unix_now, AclEntry, AclState, GrantId, GrantInfo, OwnerKey, OwnerList, SignedRevoke,
};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc;
use crate::core::session::IqReply;

/// The owner's side of keeping the network's providers in agreement.
impl Shared {
    /// Online providers of our own network.
    pub(super) fn own_providers(&self) -> Result<Vec<FullJid>> {
        let network = &self.network;
        let targets: Vec<FullJid> = self
            .directory
            .locked()
            .providers()
            .into_iter()
            .map(|p| p.jid)
            .filter(|j| j.to_bare() == *network)
            .collect();
        if targets.is_empty() {
            return Err(Error::new(
                ErrorKind::ProviderUnavailable,
                "no provider of this network is online",
            ));
        }
        Ok(targets)
    }

    /// Sends one management request to each of `targets` (concurrently); the `<acl/>` states of
    /// those that answered, and the failures of the others.
    pub(super) async fn each_provider(
        &self,
        targets: &[FullJid],
        set: bool,
        payload: Element,
    ) -> (BTreeMap<FullJid, AclState>, Vec<(FullJid, Error)>) {
        let calls = targets.iter().map(|jid| {
            let payload = payload.clone();
            async move {
                let answer = self.access_iq(jid, set, payload).await.and_then(|el| {
                    AclState::try_from(el)
                        .map_err(|e| Error::new(ErrorKind::Protocol, format!("<acl>: {e}")))
                });
                (jid.clone(), answer)
            }
        });
        let mut ok = BTreeMap::new();
        let mut failed = Vec::new();
        for (jid, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok(state) => {
                    ok.insert(jid, state);
                }
                Err(e) => {
                    tracing::info!(provider = %jid, error = %e, "access request failed");
                    failed.push((jid, e));
                }
            }
        }
        (ok, failed)
    }

    /// One management iq through the tunnel to `provider`.
    pub(super) async fn access_iq(
        &self,
        provider: &FullJid,
        set: bool,
        payload: Element,
    ) -> Result<Element> {
        let e2e = self.e2e.as_ref().ok_or_else(no_tunnel)?;
        let to = Jid::from(provider.clone());
        let iq = if set {
            Iq::Set {
                from: None,
                to: Some(to),
                id: String::new(),
                payload,
            }
        } else {
            Iq::Get {
                from: None,
                to: Some(to),
                id: String::new(),
                payload,
            }
        };
        match e2e.request(iq, self.rpc_timeout).await? {
            IqReply::Result(Some(el)) => Ok(el),
            IqReply::Result(None) => Err(Error::new(ErrorKind::Protocol, "empty access answer")),
            IqReply::Error(e) => Err(rpc::error_from_stanza("access", &e)),
        }
    }

    /// A provider of our network came (back) online: bring its ACL in line with the others'. Grants
    /// active elsewhere that it lacks are installed (a provider that was off when the owner
    /// approved); grants revoked elsewhere that it still holds are revoked (a provider that was off
    /// when the owner revoked: revocation must reach every provider). Runs on owner devices only.
    pub(super) async fn sync_access(self: Arc<Self>, newcomer: FullJid) {
        let Some(owner) = &self.owner else { return };
        let Ok(targets) = self.own_providers() else {
            return;
        };
        let register = Element::from(OwnerKey::register(owner.spki.clone()));
        if let Err(e) = self.access_iq(&newcomer, true, register).await {
            // A provider that takes no guests, or not reachable: nothing to keep in agreement.
            tracing::debug!(provider = %newcomer, error = %e, "no access sync");
            return;
        }
        // Owner keys this phone removed while the newcomer was away go there too (their grants
        // with them). Only asked when there is something to catch up on: one iq less per sync.
        let removed_any = owner.revoked.locked().removed_any_owner();
        let listed = if removed_any {
            self.access_iq(
                &newcomer,
                false,
                Element::from(OwnerList { owners: vec![] }),
            )
            .await
            .ok()
        } else {
            None
        };
        if let Some(el) = listed {
            for held in OwnerList::try_from(el)
                .map(|l| l.owners)
                .unwrap_or_default()
            {
                if !owner.revoked.locked().owner_removed(&held.key) {
                    continue;
                }
                let removal = OwnerKey {
                    key: held.key,
                    device: None,
                    remove: true,
                };
                match self
                    .access_iq(&newcomer, true, Element::from(removal))
                    .await
                {
                    Ok(_) => tracing::info!(provider = %newcomer, "removed owner key caught up"),
                    Err(e) => tracing::info!(provider = %newcomer, error = %e,
                        "owner key removal refused"),
                }
            }
        }
        let (states, _) = self
            .each_provider(&targets, false, Element::from(empty_acl()))
            .await;
        let Some(theirs) = states.get(&newcomer) else {
            return;
        };
        let others = merge_grants(
            states
                .iter()
                .filter(|(jid, _)| **jid != newcomer)
                .map(|(_, s)| s.clone()),
        );
        let held: BTreeMap<GrantId, &AclEntry> = theirs
            .entries
            .iter()
            .map(|e| (e.grant.id.clone(), e))
            .collect();
        let version = revoke_version(states.values());
        // What this phone revoked counts as revoked, whatever the providers online say: the one
        // that knew may be off, and the newcomer (or the only other one) may have missed it.
        let revoked_here = |id: &GrantId| owner.revoked.locked().contains(id);
        let mut infos = others;
        for entry in &theirs.entries {
            if revoked_here(&entry.grant.id) && !infos.iter().any(|i| i.grant.id == entry.grant.id)
            {
                infos.push(GrantInfo {
                    grant: entry.grant.clone(),
                    revoked_at: Some(unix_now()),
                    active: false,
                });
            }
        }
        for info in infos {
            let mine = held.get(&info.grant.id);
            let revoked_elsewhere = info.revoked_at.is_some() || revoked_here(&info.grant.id);
            let payload = match (mine, revoked_elsewhere) {
                (Some(entry), true) if entry.revoked_at.is_none() => {
                    match SignedRevoke::sign(
                        self.network.clone(),
                        info.grant.id.clone(),
                        version,
                        owner.config.store.as_ref(),
                        &owner.config.alias,
                    ) {
                        Ok(revoke) => Element::from(revoke),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot sign a catch-up revocation");
                            continue;
                        }
                    }
                }
                (None, false) if info.active => Element::from(info.grant.clone()),
                _ => continue,
            };
            match self.access_iq(&newcomer, true, payload).await {
                Ok(_) => tracing::info!(provider = %newcomer, grant = %info.grant.id,
                    revoked = revoked_elsewhere, "access caught up"),
                Err(e) => tracing::info!(provider = %newcomer, grant = %info.grant.id,
                    error = %e, "access catch-up refused"),
            }
        }
    }
}
