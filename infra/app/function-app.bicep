// The memory service: a Python 3.11 Function App on the Flex Consumption plan (FC1, Linux).
// It runs as one user-assigned identity, reads its host storage keylessly, gets secrets only as
// Key Vault references, and accepts calls from API Management only (function keys on every route
// but the anonymous ones, plus an IP allow-list when the APIM tier has stable outbound addresses).

@description('Azure region of the plan and the app (must offer Flex Consumption).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the Function App (becomes NAME.azurewebsites.net).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances the plan scales out to (caps cost and backend load).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances of the HTTP function group (no cold start, billed while idle); 0 for none.')
@minValue(0)
@maxValue(40)
param alwaysReadyInstances int = 0

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID, host storage and telemetry auth).')
param identityClientId string

@description('Blob endpoint of the storage account (host storage and deployment package).')
param storageBlobEndpoint string

@description('Queue endpoint of the storage account (host storage).')
param storageQueueEndpoint string

@description('Table endpoint of the storage account (AZURE_TABLES_ENDPOINT).')
param storageTableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Table of chat session turns.')
param sessionsTableName string

@description('Table of per-memory change history.')
param historyTableName string

@description('Table of ingestion events (asynchronous adds, chat learning).')
param eventsTableName string

@description('Table of tenants\' token use per budget window (TENANT_TOKEN_BUDGET).')
param usageTableName string

@description('Model tokens one tenant may spend per minute, chat and embeddings together (TENANT_TOKEN_BUDGET); 0: no budget. Applies with a tenant header only.')
@minValue(0)
param tenantTokenBudget int = 0

@description('Application Insights connection string (telemetry is sent with the identity, not the key).')
param applicationInsightsConnectionString string

@description('Python log level of the service loggers.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('Vector store the service uses: qdrant or chroma (both as servers in the cloud).')
@allowed([
  'qdrant'
  'chroma'
])
param vectorStore string

@description('Vector collection holding the memories; distinct names let environments share a cluster.')
param collectionName string

@description('Qdrant server URL (VECTOR_STORE=qdrant).')
param qdrantUrl string = ''

@description('Versionless Key Vault URI of the Qdrant API key, empty when the server needs none.')
param qdrantApiKeySecretUri string = ''

@description('Chroma server host (VECTOR_STORE=chroma).')
param chromaHost string = ''

@description('Chroma server port.')
param chromaPort int = 443

@description('Reach the Chroma server over HTTPS.')
param chromaSsl bool = true

@description('Versionless Key Vault URI of the Chroma token, empty when the server needs none.')
param chromaAuthTokenSecretUri string = ''

@description('Azure OpenAI endpoint, https://NAME.openai.azure.com/.')
param openAiEndpoint string

@description('Azure OpenAI chat deployment name.')
param chatDeploymentName string

@description('Azure OpenAI embedding deployment name.')
param embeddingDeploymentName string

@description('Model behind the embedding deployment (sets the vector size).')
param embeddingModelName string

@description('Neo4j URI (neo4j+s://... for Aura); empty disables graph memory.')
param neo4jUri string = ''

@description('Neo4j user.')
param neo4jUsername string = 'neo4j'

@description('Neo4j database.')
param neo4jDatabase string = 'neo4j'

@description('Versionless Key Vault URI of the Neo4j password.')
param neo4jPasswordSecretUri string = ''

@description('Header naming the tenant, set by API Management from the subscription (TENANT_HEADER); empty: no tenancy.')
param tenantHeader string = ''

@description('Header naming the end user, set by API Management from a validated token (USER_HEADER); empty: unbound.')
param userHeader string = ''

@description('Versionless Key Vault URI of the key API Management signs the caller headers with (CALLER_SIGNING_KEY); set whenever tenantHeader or userHeader is.')
param callerSigningKeySecretUri string

@description('Outbound IPs of API Management; when not empty, every other caller is denied.')
param allowedCallerIpAddresses array = []

@description('Client id of API Management\'s identity: the one application App Service Authentication lets in.')
param apimIdentityClientId string

@description('Client ids of further identities allowed to call the app directly (operators: /metrics, /health/detail, /docs).')
param operatorClientIds array = []

@description('Subnet (delegated to Microsoft.App/environments) for VNet integration; empty for none.')
param virtualNetworkSubnetId string = ''

// Settings of the Functions host itself, not read by the app code.
var hostSettings = {
  // Identity-based host storage: no connection string exists anywhere.
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  // Telemetry is authenticated with the identity because local auth is off on Application Insights.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// Settings the app reads (shared/settings.py). Names are checked against that file by tests/infra.
var serviceSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  // DefaultAzureCredential picks the user-assigned identity through this variable.
  AZURE_CLIENT_ID: identityClientId
  LOG_LEVEL: logLevel
  VECTOR_STORE: vectorStore
  COLLECTION_NAME: collectionName
  // Keyless Azure OpenAI: no AZURE_OPENAI_API_KEY, the identity has Cognitive Services OpenAI User.
  LLM_PROVIDER: 'azure_openai'
  EMBEDDING_PROVIDER: 'azure_openai'
  AZURE_OPENAI_ENDPOINT: openAiEndpoint
  AZURE_OPENAI_DEPLOYMENT: chatDeploymentName
  AZURE_EMBEDDING_DEPLOYMENT: embeddingDeploymentName
  AZURE_EMBEDDING_MODEL: embeddingModelName
  // Sessions and history live in Table Storage, reached with the identity.
  STATE_STORE: 'azure_table'
  AZURE_TABLES_ENDPOINT: storageTableEndpoint
  SESSIONS_TABLE: sessionsTableName
  HISTORY_TABLE: historyTableName
  EVENTS_TABLE: eventsTableName
  // Ingestion off the request path: events on the memory-ingest queue of the host storage
  // (AzureWebJobsStorage__queueServiceUri above, keyless), run by the queue-triggered function.
  INGEST_MODE: 'queue'
  GRAPH_STORE: empty(neo4jUri) ? 'none' : 'neo4j'
}

// Settings that exist only for the chosen backends: an empty value would not mean "unset" to the app.
// Secrets are Key Vault references resolved by the platform with the identity, never plain values.
var qdrantApiKeySetting = empty(qdrantApiKeySecretUri) ? {} : {
  QDRANT_API_KEY: '@Microsoft.KeyVault(SecretUri=${qdrantApiKeySecretUri})'
}
var qdrantSettings = vectorStore != 'qdrant' ? {} : union({ QDRANT_URL: qdrantUrl }, qdrantApiKeySetting)

var chromaAuthTokenSetting = empty(chromaAuthTokenSecretUri) ? {} : {
  CHROMA_AUTH_TOKEN: '@Microsoft.KeyVault(SecretUri=${chromaAuthTokenSecretUri})'
}
var chromaServerSettings = {
  CHROMA_HOST: chromaHost
  CHROMA_PORT: string(chromaPort)
  CHROMA_SSL: chromaSsl ? 'true' : 'false'
}
var chromaSettings = vectorStore != 'chroma' ? {} : union(chromaServerSettings, chromaAuthTokenSetting)

var neo4jPasswordSetting = empty(neo4jPasswordSecretUri) ? {} : {
  NEO4J_PASSWORD: '@Microsoft.KeyVault(SecretUri=${neo4jPasswordSecretUri})'
}
var neo4jServerSettings = {
  NEO4J_URI: neo4jUri
  NEO4J_USERNAME: neo4jUsername
  NEO4J_DATABASE: neo4jDatabase
}
var neo4jSettings = empty(neo4jUri) ? {} : union(neo4jServerSettings, neo4jPasswordSetting)

// Who calls, as API Management vouches for it (see docs/api.md, "Tenants and end users"); unset when off.
var tenantSettings = empty(tenantHeader) ? {} : {
  TENANT_HEADER: tenantHeader
  // Fair use of the shared model deployments: each tenant's tokens are counted in the usage table
  // by every worker; a tenant over its share is 429 with Retry-After (shared/ai/quota.py).
  TENANT_TOKEN_BUDGET: string(tenantTokenBudget)
  USAGE_TABLE: usageTableName
}
var userSettings = empty(userHeader) ? {} : {
  USER_HEADER: userHeader
}
// The headers are believed only with API Management's signature over them (shared/caller_signature.py):
// a request that reached the app without passing the policy cannot name a tenant or a user.
var signingSettings = (empty(tenantHeader) && empty(userHeader)) ? {} : {
  CALLER_SIGNING_KEY: '@Microsoft.KeyVault(SecretUri=${callerSigningKeySecretUri})'
}
var callerSettings = union(tenantSettings, userSettings, signingSettings)

var appSettings = union(hostSettings, serviceSettings, qdrantSettings, chromaSettings, neo4jSettings, callerSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption needs always-ready instances in several zones, a cost at rest this service avoids; instances are stateless and rescheduled on failure.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Linux.
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: API Management (no VNet on the default tiers) calls the app over its public endpoint; App Service Authentication (authSettings below) lets in only API Management's managed-identity token, and the function key is checked behind it.
  // checkov:skip=CKV_AZURE_17: the caller (API Management) authenticates with the function key from Key Vault; client certificates would add a certificate lifecycle for no extra guarantee.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero by design (no cost at rest); always-ready instances are the alwaysReadyInstances parameter (default 0) for when cold starts matter.
  // checkov:skip=CKV_AZURE_213: the App Service health check is not available on Flex Consumption; /health is served by the app and monitored through Application Insights.
  name: name
  location: location
  // azd deploys the code of the service named `api` in azure.yaml to the resource with this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity (there is no system identity).
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        // Every function of the app is HTTP-triggered, so they scale as Flex's one 'http' group; the
        // always-ready count applies to that group. At most 40, the lowest maximumInstanceCount.
        alwaysReady: (alwaysReadyInstances == 0) ? [] : [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ]
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    // App settings are not here but in the appsettings resource below, their one place.
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Browsers reach the API through API Management, which answers CORS; the app allows no origin.
      cors: {
        allowedOrigins: []
      }
      ipSecurityRestrictionsDefaultAction: empty(allowedCallerIpAddresses) ? 'Allow' : 'Deny'
      ipSecurityRestrictions: [for (ip, i) in allowedCallerIpAddresses: {
        name: 'apim-${i}'
        description: 'API Management gateway'
        action: 'Allow'
        ipAddress: '${ip}/32'
        priority: 100 + i
      }]
      // The deployment endpoint (scm) stays reachable for azd; it only accepts Entra ID tokens.
      scmIpSecurityRestrictionsUseMain: false
    }
  }
}

// The app settings, as their own resource (like the Flex Consumption azd template). Writing them
// replaces the app's whole set, so the settings already on the app (added in the portal or by a tool)
// are read first and kept; where a name is in both, the value declared here wins. A setting removed
// from this file therefore stays on the app until it is deleted there.
resource appSettingsConfig 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: false positive: this sites/config resource is 'appsettings' (environment variables); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_63: false positive: this sites/config resource is 'appsettings' (environment variables); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_65: false positive: this sites/config resource is 'appsettings' (environment variables); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_66: false positive: this sites/config resource is 'appsettings' (environment variables); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_80: false positive: this sites/config resource is 'appsettings' (environment variables); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_88: false positive: this sites/config resource is 'appsettings' (environment variables); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_222: false positive: this sites/config resource is 'appsettings' (environment variables); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  parent: functionApp
  name: 'appsettings'
  properties: union(list('${functionApp.id}/config/appsettings', '2024-04-01').properties, appSettings)
}

// No publishing with user names and passwords, neither FTP nor the deployment endpoint.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// App Service Authentication: every request but the anonymous /health needs an Entra ID token whose
// audience is the app's identity and whose caller is API Management's identity (the policy gets it
// with authentication-managed-identity). Unlike an IP allow-list, this holds on the v2 and
// Consumption tiers of API Management, which have no fixed outbound addresses, so the host key alone
// no longer opens the app and nobody can go around the rate limit and quota. The function key is
// still checked behind it (two independent locks). Managed-identity tokens are v1 tokens, hence the
// sts.windows.net issuer.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: false positive: this sites/config resource is 'authsettingsV2' (App Service Authentication itself); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_63: false positive: this sites/config resource is 'authsettingsV2' (App Service Authentication itself); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_65: false positive: this sites/config resource is 'authsettingsV2' (App Service Authentication itself); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_66: false positive: this sites/config resource is 'authsettingsV2' (App Service Authentication itself); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_80: false positive: this sites/config resource is 'authsettingsV2' (App Service Authentication itself); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_88: false positive: this sites/config resource is 'authsettingsV2' (App Service Authentication itself); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  // checkov:skip=CKV_AZURE_222: false positive: this sites/config resource is 'authsettingsV2' (App Service Authentication itself); the check inspects a property of the site configuration ('web'/'logs' config), which this resource cannot hold
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/health'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: identityClientId
          openIdIssuer: 'https://sts.windows.net/${tenant().tenantId}/'
        }
        validation: {
          allowedAudiences: [
            identityClientId
            'api://${identityClientId}'
          ]
          defaultAuthorizationPolicy: {
            allowedApplications: concat([apimIdentityClientId], operatorClientIds)
          }
        }
      }
    }
  }
}

output name string = functionApp.name
// The audience API Management asks tokens for (authentication-managed-identity resource).
output authAudience string = identityClientId
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
