//! The OpenID provider, through the `openidconnect` crate: discovery from the issuer (kept
//! for a few minutes, so that rotated keys are picked up), the authorization URL with
//! state, nonce and a PKCE S256 challenge, and the code exchange, whose ID token is checked
//! for its signature, issuer, audience, nonce and expiry before anything of it is used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::http::ProviderHttp;

/// How long a discovery document (and its key set) is used before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// The claims beyond the standard ones that roles are read from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupsClaim {
    /// Okta, Entra ID, Dex and others put group names (or ids) here: a list, or one string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<serde_json::Value>,
}

impl AdditionalClaims for GroupsClaim {}

type Fields = IdTokenFields<
    GroupsClaim,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type OidcClient = Client<
    GroupsClaim,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What went wrong with the provider. None of it carries a code, a token or the secret.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the OpenID provider's discovery at {issuer}: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("the OpenID provider's token endpoint: {0}")]
    Exchange(String),
    #[error("the OpenID provider sent no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("auth: {0}")]
    Setup(String),
}

/// A login begun: where to send the browser, and what the callback must see again.
pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// Who logged in, from a verified ID token.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    /// `email_verified`, when the provider says.
    pub email_verified: Option<bool>,
    pub groups: Vec<String>,
}

pub struct Provider {
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: ClientSecret,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    http: ProviderHttp,
    discovered: RwLock<Option<(Instant, Arc<OidcClient>)>>,
}

impl Provider {
    pub fn new(
        issuer: &str,
        client_id: &str,
        secret: String,
        redirect: String,
        scopes: &[String],
    ) -> Result<Self, LoginError> {
        Ok(Self {
            issuer: IssuerUrl::new(issuer.to_string())
                .map_err(|e| LoginError::Setup(format!("auth.issuer: {e}")))?,
            client_id: ClientId::new(client_id.to_string()),
            secret: ClientSecret::new(secret),
            redirect: RedirectUrl::new(redirect)
                .map_err(|e| LoginError::Setup(format!("auth.public_url: {e}")))?,
            scopes: scopes
                .iter()
                .filter(|s| s.as_str() != "openid")
                .cloned()
                .collect(),
            http: ProviderHttp::new().map_err(|e| LoginError::Setup(e.to_string()))?,
            discovered: RwLock::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The client, from a discovery at most [`DISCOVERY_TTL`] old.
    async fn client(&self) -> Result<Arc<OidcClient>, LoginError> {
        if let Some((at, c)) = self.discovered.read().await.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(c.clone());
        }
        let mut slot = self.discovered.write().await;
        if let Some((at, c)) = slot.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(c.clone());
        }
        // The issuer in the document must be this one exactly (the crate checks).
        let meta = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| LoginError::Discovery {
                issuer: self.issuer.to_string(),
                reason: chain(&e),
            })?;
        let client = Arc::new(
            OidcClient::from_provider_metadata(
                meta,
                self.client_id.clone(),
                Some(self.secret.clone()),
            )
            .set_redirect_uri(self.redirect.clone()),
        );
        *slot = Some((Instant::now(), client.clone()));
        Ok(client)
    }

    /// The authorization URL of a new login: code flow, fresh state and nonce, PKCE S256.
    pub async fn start(&self) -> Result<Started, LoginError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and checks the ID token.
    pub async fn finish(
        &self,
        code: String,
        verifier: String,
        nonce: String,
    ) -> Result<Identity, LoginError> {
        let client = self.client().await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| LoginError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::Exchange(chain(&e)))?;
        let id_token = tokens.id_token().ok_or(LoginError::NoIdToken)?;
        let verifier = client.id_token_verifier();
        // Signature (against the provider's keys), issuer, audience, expiry and nonce.
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce))
            .map_err(|e| LoginError::IdToken(e.to_string()))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            if actual != *expected {
                return Err(LoginError::IdToken(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        let groups = match &claims.additional_claims().groups {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified(),
            groups,
        })
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
