//! Cognito ID tokens from a moto user pool, verified through the pool's JWKS over HTTP, with
//! the JWKS URL configured apart from the issuer (moto serves it elsewhere than the real issuer).

mod common;

use common::moto;

use std::collections::HashMap;

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cognitoidentityprovider::types::{AuthFlowType, ExplicitAuthFlowsType};
use manuel_core::auth::IdentityConfig;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn id_tokens_from_a_user_pool_verify_against_its_jwks() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let cognito = Client::from_conf(
        aws_sdk_cognitoidentityprovider::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .build(),
    );
    let pool = cognito
        .create_user_pool()
        .pool_name(format!("manuel-{}", uuid::Uuid::new_v4()))
        .send()
        .await?;
    let pool_id = pool
        .user_pool
        .and_then(|pool| pool.id)
        .ok_or("no pool id")?;
    let app = cognito
        .create_user_pool_client()
        .user_pool_id(&pool_id)
        .client_name("mobile")
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await?;
    let client_id = app
        .user_pool_client
        .and_then(|client| client.client_id)
        .ok_or("no client id")?;
    cognito
        .admin_create_user()
        .user_pool_id(&pool_id)
        .username("alice")
        .temporary_password("Temp-Passw0rd!")
        .send()
        .await?;
    cognito
        .admin_set_user_password()
        .user_pool_id(&pool_id)
        .username("alice")
        .password("Real-Passw0rd!")
        .permanent(true)
        .send()
        .await?;
    let auth = cognito
        .initiate_auth()
        .client_id(&client_id)
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .auth_parameters("USERNAME", "alice")
        .auth_parameters("PASSWORD", "Real-Passw0rd!")
        .send()
        .await?;
    let id_token = auth
        .authentication_result
        .and_then(|result| result.id_token)
        .ok_or("no id token")?;
    let sub = cognito
        .admin_get_user()
        .user_pool_id(&pool_id)
        .username("alice")
        .send()
        .await?
        .user_attributes
        .unwrap_or_default()
        .into_iter()
        .find(|attribute| attribute.name == "sub")
        .and_then(|attribute| attribute.value)
        .ok_or("no sub")?;

    let vars = HashMap::from([
        (
            "JWT_ISSUER".to_owned(),
            format!("https://cognito-idp.us-east-1.amazonaws.com/{pool_id}"),
        ),
        ("JWT_AUDIENCE".to_owned(), client_id.clone()),
        (
            "JWKS_URL".to_owned(),
            format!("{url}/{pool_id}/.well-known/jwks.json"),
        ),
    ]);
    let config = IdentityConfig::from_vars(&vars)?;
    assert!(config.verify_jwt, "verification is on unless turned off");
    let verifier = manuel_aws::cognito::verifier(&config).await?;
    assert_eq!(
        verifier
            .verify(&id_token)
            .await
            .map(|user| user.to_string()),
        Ok(sub)
    );

    // The same token for another app client, or from another issuer, is refused.
    let mut other = vars.clone();
    other.insert("JWT_AUDIENCE".to_owned(), "another-client".to_owned());
    let wrong_audience = manuel_aws::cognito::verifier(&IdentityConfig::from_vars(&other)?).await?;
    assert!(wrong_audience.verify(&id_token).await.is_err());
    other.insert("JWT_AUDIENCE".to_owned(), client_id);
    other.insert(
        "JWT_ISSUER".to_owned(),
        "https://cognito-idp.us-east-1.amazonaws.com/elsewhere".to_owned(),
    );
    let wrong_issuer = manuel_aws::cognito::verifier(&IdentityConfig::from_vars(&other)?).await?;
    assert!(wrong_issuer.verify(&id_token).await.is_err());
    Ok(())
}
