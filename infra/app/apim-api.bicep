// What API Management serves: the Memory Layer API imported from the app's OpenAPI document, the
// product callers subscribe to, the policies (checked-in XML), and the host key APIM sends to the
// Function App: declared on the app, kept in Key Vault and exposed to policies as a secret named value.

@description('Name of the API Management service.')
param apimName string

@description('Pricing tier of the service; the Consumption tier gets the per-subscription rate limit.')
param apimSkuName string

@description('Client id of the APIM identity that reads the function key from Key Vault.')
param apimIdentityClientId string

@description('Name of the Function App behind the API.')
param functionAppName string

@description('Audience of the token API Management presents to the Function App (its App Service Authentication).')
param functionAppAudience string

@description('Name of the Key Vault that stores the function key.')
param keyVaultName string

@secure()
@description('Value of the host key APIM sends to the Function App (x-functions-key).')
@minLength(32)
param functionHostKey string

@description('URL suffix of the API on the gateway; empty keeps the app paths (/api/..., /health) unchanged.')
param apiPath string = ''

@description('Browser origins allowed to call the API (CORS).')
@minLength(1)
param corsAllowedOrigins array

@description('Calls allowed per caller IP (per subscription on the Consumption tier) in each rate-limit period.')
@minValue(1)
param rateLimitCalls int

@description('Length of the rate-limit period, in seconds (API Management allows at most 300).')
@minValue(1)
@maxValue(300)
param rateLimitPeriodSeconds int

@description('Calls allowed per subscription in each quota period.')
@minValue(1)
param quotaCalls int

@description('Length of the quota period, in seconds.')
@minValue(300)
param quotaPeriodSeconds int

@description('Header the policy sets to the caller\'s subscription id, the tenant the app keeps data apart by (TENANT_HEADER); empty: no tenancy.')
param tenantHeader string

@description('Header the policy sets to the end user named by a validated token (USER_HEADER); empty: end users are not bound.')
param userHeader string

@description('OpenID configuration URL of the end-user token issuer (used when userHeader is set).')
param userTokenOpenIdConfigUrl string

@description('Issuer the end-user token must carry.')
param userTokenIssuer string

@description('Audience the end-user token must carry (the client id or application ID URI of the API registration).')
param userTokenAudience string

@description('Claim of the end-user token that names the user (sent in userHeader).')
param userTokenClaim string

resource apim 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The host key APIM presents as x-functions-key: a named host key declared on the app, rather than
// the default key read back with listKeys(), which a just-created app with no code yet may not be
// able to answer. Its value comes from the deployment and goes to Key Vault unchanged, so the app
// and APIM hold the same key by construction. Bicep has no types for this resource type (warning
// BCP081, not an error); the Functions docs declare host keys this way ("Function access keys").
resource apimHostKey 'Microsoft.Web/sites/host/functionKeys@2024-04-01' = {
  name: '${functionApp.name}/default/apim'
  properties: {
    name: 'apim'
    value: functionHostKey
  }
}

// The same value in Key Vault, where APIM reads it: never a template output or a plain named value.
resource functionKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the value is the host key APIM sends; it changes only with the functionHostKey parameter, and an expiry date would cut API Management off the app.
  parent: vault
  name: 'function-key-apim'
  properties: {
    value: functionHostKey
    contentType: 'text/plain'
  }
}

resource functionKeyNamedValue 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = {
  parent: apim
  name: 'function-key'
  properties: {
    displayName: 'function-key'
    secret: true
    keyVault: {
      // Versionless: APIM follows a rotated key (it refreshes Key Vault named values every 4 hours).
      secretIdentifier: functionKeySecret.properties.secretUri
      identityClientId: apimIdentityClientId
    }
  }
  // The app accepts the key before APIM starts sending it.
  dependsOn: [
    apimHostKey
  ]
}

resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: apim
  name: 'memory-layer'
  properties: {
    displayName: 'Memory Layer API'
    path: apiPath
    protocols: [
      'https'
    ]
    subscriptionRequired: true
    serviceUrl: 'https://${functionApp.properties.defaultHostName}'
    // The OpenAPI 3.0 rendition of the app's 3.1 document, written by `python -m tools.build.export_openapi`
    // (tools/build/openapi_apim.py); tests/infra keeps it equal to what that generates, valid 3.0, and small.
    format: 'openapi+json'
    value: loadTextContent('../openapi.json')
  }
}

// <origin> elements for the allow-list (the XML file holds a placeholder).
var corsOriginsXml = '<origin>${join(corsAllowedOrigins, '</origin><origin>')}</origin>'

// Who calls (in place of the caller-identity placeholder of api.xml): the tenant from the subscription,
// then, when end users are bound, the validated token and its user claim. Each header overrides
// whatever the client sent.
var tenantPolicyXml = empty(tenantHeader) ? '' : replace(loadTextContent('policies/tenant-header.xml'), '__TENANT_HEADER__', tenantHeader)
var userTokenXml = replace(replace(replace(replace(loadTextContent('policies/user-token.xml'),
  '__USER_TOKEN_OPENID_CONFIG__', userTokenOpenIdConfigUrl),
  '__USER_TOKEN_AUDIENCE__', userTokenAudience),
  '__USER_TOKEN_ISSUER__', userTokenIssuer),
  '__USER_TOKEN_CLAIM__', userTokenClaim)
var userHeaderXml = replace(replace(loadTextContent('policies/user-header.xml'), '__USER_HEADER__', userHeader), '__USER_TOKEN_CLAIM__', userTokenClaim)
var userPolicyXml = empty(userHeader) ? '' : '${userTokenXml}${userHeaderXml}'
var apiPolicyXml = replace(replace(replace(replace(loadTextContent('policies/api.xml'),
  '__CORS_ALLOWED_ORIGINS__', corsOriginsXml),
  '__FUNCTION_APP_AUDIENCE__', functionAppAudience),
  '__APIM_IDENTITY_CLIENT_ID__', apimIdentityClientId),
  '__CALLER_IDENTITY__', '${tenantPolicyXml}${userPolicyXml}')

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'xml'
    value: apiPolicyXml
  }
  // The policy references {{function-key}}, which must exist first.
  dependsOn: [
    functionKeyNamedValue
  ]
}

resource product 'Microsoft.ApiManagement/service/products@2024-05-01' = {
  parent: apim
  name: 'memory-layer'
  properties: {
    displayName: 'Memory Layer'
    description: 'Access to the Memory Layer API with a subscription key, within the rate limit and quota.'
    subscriptionRequired: true
    approvalRequired: false
    state: 'published'
  }
}

resource productApi 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = {
  parent: product
  name: api.name
}

// rate-limit-by-key (per caller IP) is not offered on the Consumption tier; there the product falls
// back to rate-limit, which counts per subscription key.
var productPolicyTemplate = apimSkuName == 'Consumption' ? loadTextContent('policies/product-consumption.xml') : loadTextContent('policies/product.xml')

resource productPolicy 'Microsoft.ApiManagement/service/products/policies@2024-05-01' = {
  parent: product
  name: 'policy'
  properties: {
    format: 'xml'
    value: replace(replace(replace(replace(productPolicyTemplate,
      '__RATE_LIMIT_CALLS__', string(rateLimitCalls)),
      '__RATE_LIMIT_PERIOD__', string(rateLimitPeriodSeconds)),
      '__QUOTA_CALLS__', string(quotaCalls)),
      '__QUOTA_PERIOD__', string(quotaPeriodSeconds))
  }
}

// One subscription so the deployer can call the API right away (its key is read with the CLI, see
// docs/deploy.md); more callers get their own subscriptions to the product.
resource defaultSubscription 'Microsoft.ApiManagement/service/subscriptions@2024-05-01' = {
  parent: apim
  name: 'memory-layer-default'
  properties: {
    displayName: 'Memory Layer default subscription'
    scope: product.id
    state: 'active'
    allowTracing: false
  }
}

output apiName string = api.name
output productName string = product.name
output subscriptionName string = defaultSubscription.name
