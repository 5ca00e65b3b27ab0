// What API Management serves: the Memory Layer API imported from the app's OpenAPI document, the
// app's MCP server (the Memory Layer MCP API), the product callers subscribe to, the policies
// (checked-in XML), and the keys APIM sends to the Function App (the host key for the REST routes,
// the MCP extension's system key for the MCP endpoint): declared on the app, kept in Key Vault and
// exposed to policies as secret named values.

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

@secure()
@description('Value of the MCP extension\'s system key (mcp_extension) APIM sends to the app\'s MCP endpoint.')
@minLength(32)
param mcpExtensionKey string

@description('Versionless Key Vault URI of the key APIM signs the caller headers with (the app\'s CALLER_SIGNING_KEY).')
param callerSigningKeySecretUri string

@description('URL suffix of the API on the gateway; empty keeps the app paths (/api/..., /health) unchanged.')
param apiPath string = ''

@description('URL suffix of the MCP API on the gateway: clients connect to https://<gateway>/<mcpApiPath>/mcp.')
@minLength(1)
param mcpApiPath string = 'memory-mcp'

@description('Browser origins allowed to call the API (CORS).')
@minLength(1)
param corsAllowedOrigins array

@description('Calls allowed per subscription (per tenant) in each rate-limit period, REST and MCP together.')
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

// Required: main.bicep passes the audience when userHeader is set and a stand-in otherwise, so a
// userHeader with an empty audience (a validate-jwt that accepts no token) fails the deployment
// here, at parameter validation, before any policy is written.
@description('Audience the end-user token must carry (the client id or application ID URI of the API registration).')
@minLength(1)
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

// The key APIM signs the caller headers with: the Key Vault secret the app reads as CALLER_SIGNING_KEY.
resource callerSigningKeyNamedValue 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = {
  parent: apim
  name: 'caller-signing-key'
  properties: {
    displayName: 'caller-signing-key'
    secret: true
    keyVault: {
      secretIdentifier: callerSigningKeySecretUri
      identityClientId: apimIdentityClientId
    }
  }
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

// Who calls (in place of the caller-identity placeholder of api.xml and mcp-api.xml): first every
// caller header a client sent is deleted (the default names and the configured ones, so that a header
// the policy does not set, such as the user header when end users are not bound, never reaches the
// app as the client wrote it), then the tenant from the subscription, then, when end users are
// bound, the validated token and its user claim, and last the signature over both that the app
// checks before it believes either (caller-signature.xml).
var defaultCallerHeaders = [
  'x-memory-tenant'
  'x-memory-user'
  'x-memory-signature'
]
var tenantHeaders = empty(tenantHeader) ? [] : [
  toLower(tenantHeader)
]
var userHeaders = empty(userHeader) ? [] : [
  toLower(userHeader)
]
// union() keeps one of equal items: each name is deleted once.
var strippedHeaders = union(defaultCallerHeaders, tenantHeaders, userHeaders)
var stripElements = [for header in strippedHeaders: '<set-header name="${header}" exists-action="delete" />']
var stripPolicyXml = join(stripElements, '')
var signaturePolicyXml = (empty(tenantHeader) && empty(userHeader)) ? '' : loadTextContent('policies/caller-signature.xml')
var callerIdentityXml = '${stripPolicyXml}${tenantPolicyXml}${userPolicyXml}${signaturePolicyXml}'
var gatewayErrorsXml = loadTextContent('policies/gateway-errors.xml')
var tenantPolicyXml = empty(tenantHeader) ? '' : replace(loadTextContent('policies/tenant-header.xml'), '__TENANT_HEADER__', tenantHeader)
var userTokenXml = replace(replace(replace(replace(loadTextContent('policies/user-token.xml'),
  '__USER_TOKEN_OPENID_CONFIG__', userTokenOpenIdConfigUrl),
  '__USER_TOKEN_AUDIENCE__', userTokenAudience),
  '__USER_TOKEN_ISSUER__', userTokenIssuer),
  '__USER_TOKEN_CLAIM__', userTokenClaim)
var userHeaderXml = replace(replace(loadTextContent('policies/user-header.xml'), '__USER_HEADER__', userHeader), '__USER_TOKEN_CLAIM__', userTokenClaim)
var userPolicyXml = empty(userHeader) ? '' : '${userTokenXml}${userHeaderXml}'
var apiPolicyXml = replace(replace(replace(replace(replace(loadTextContent('policies/api.xml'),
  '__CORS_ALLOWED_ORIGINS__', corsOriginsXml),
  '__FUNCTION_APP_AUDIENCE__', functionAppAudience),
  '__APIM_IDENTITY_CLIENT_ID__', apimIdentityClientId),
  '__CALLER_IDENTITY__', callerIdentityXml),
  '__GATEWAY_ERRORS__', gatewayErrorsXml)

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'xml'
    value: apiPolicyXml
  }
  // The policy references {{function-key}} and {{caller-signing-key}}, which must exist first.
  dependsOn: [
    functionKeyNamedValue
    callerSigningKeyNamedValue
  ]
}

// --- the MCP server -----------------------------------------------------------------------------
// The app's MCP endpoint (/runtime/webhooks/mcp, streamable HTTP: POST, GET and DELETE on one path)
// published as an HTTP API that passes requests through: https://<gateway>/<mcpApiPath>/mcp. Not
// APIM's own MCP-server API type (type 'mcp'): that needs the preview API version 2025-09-01-preview
// and is not offered on the Consumption tier, which this template allows; a passthrough needs
// neither, carries every MCP message unchanged (tools/list, tool calls, sessions), and takes the
// same policies, product, subscription keys and limits as the REST API.

// The extension's system key, declared on the app like the apim host key above, so that it exists
// before any code is deployed and equals the Key Vault copy by construction. Reading it back instead
// (listKeys(resourceId('Microsoft.Web/sites/host', app, 'default'), ...).systemKeys.mcp_extension)
// fails on a first `azd up`: the host creates that key only once code using the extension has
// started, which is after provisioning. The host keeps a system key that already exists. Bicep has
// no types for this resource type either (warning BCP081).
resource mcpSystemKey 'Microsoft.Web/sites/host/systemkeys@2024-04-01' = {
  name: '${functionApp.name}/default/mcp_extension'
  properties: {
    name: 'mcp_extension'
    value: mcpExtensionKey
  }
}

resource mcpKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the value is the MCP extension key APIM sends; it changes only with the mcpExtensionKey parameter, and an expiry date would cut API Management off the MCP endpoint.
  parent: vault
  name: 'mcp-extension-key'
  properties: {
    value: mcpExtensionKey
    contentType: 'text/plain'
  }
}

resource mcpKeyNamedValue 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = {
  parent: apim
  name: 'mcp-extension-key'
  properties: {
    displayName: 'mcp-extension-key'
    secret: true
    keyVault: {
      secretIdentifier: mcpKeySecret.properties.secretUri
      identityClientId: apimIdentityClientId
    }
  }
  // The app accepts the key before APIM starts sending it.
  dependsOn: [
    mcpSystemKey
  ]
}

resource mcpApi 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: apim
  name: 'memory-layer-mcp'
  properties: {
    displayName: 'Memory Layer MCP'
    description: 'The memory tools over the Model Context Protocol (streamable HTTP), with the REST API\'s tenant, user, limits and keys.'
    path: mcpApiPath
    protocols: [
      'https'
    ]
    subscriptionRequired: true
    serviceUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks'
  }
}

// Streamable HTTP: POST sends a message, GET opens the server's event stream, DELETE ends a session.
var mcpMethods = [
  'POST'
  'GET'
  'DELETE'
]

resource mcpOperations 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = [for method in mcpMethods: {
  parent: mcpApi
  name: 'mcp-${toLower(method)}'
  properties: {
    displayName: '${method} /mcp'
    method: method
    urlTemplate: '/mcp'
  }
}]

var mcpPolicyXml = replace(replace(replace(replace(loadTextContent('policies/mcp-api.xml'),
  '__FUNCTION_APP_AUDIENCE__', functionAppAudience),
  '__APIM_IDENTITY_CLIENT_ID__', apimIdentityClientId),
  '__CALLER_IDENTITY__', callerIdentityXml),
  '__GATEWAY_ERRORS__', gatewayErrorsXml)

resource mcpApiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: mcpApi
  name: 'policy'
  properties: {
    format: 'xml'
    value: mcpPolicyXml
  }
  // The policy references {{mcp-extension-key}} and {{caller-signing-key}}, which must exist first.
  dependsOn: [
    mcpKeyNamedValue
    callerSigningKeyNamedValue
  ]
}

resource product 'Microsoft.ApiManagement/service/products@2024-05-01' = {
  parent: apim
  name: 'memory-layer'
  properties: {
    displayName: 'Memory Layer'
    description: 'Access to the Memory Layer API and its MCP server with a subscription key (one tenant per subscription), within the rate limit and quota.'
    subscriptionRequired: true
    approvalRequired: false
    state: 'published'
  }
}

resource productApi 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = {
  parent: product
  name: api.name
}

// The MCP API is in the same product: the same subscription keys, one rate limit and quota per
// subscription across REST and MCP, and the same tenant for both.
resource productMcpApi 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = {
  parent: product
  name: mcpApi.name
}

// Both product policies count the burst limit per subscription (per tenant): rate-limit-by-key keyed
// on the subscription id, or, on the Consumption tier, which lacks rate-limit-by-key, rate-limit.
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
output mcpApiName string = mcpApi.name
output mcpApiPath string = mcpApi.properties.path
output productName string = product.name
output subscriptionName string = defaultSubscription.name
