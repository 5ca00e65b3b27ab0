// The whole Azure deployment of the Memory Layer service, from an empty subscription:
//   API Management (the public entry to the REST API and the MCP server: subscription keys, rate
//   limit, quota, CORS, the caller's tenant and user set and signed by the policy)
//     -> Function App on Flex Consumption (Python 3.11, callable only with a key only APIM holds)
//       -> Azure OpenAI (chat + embeddings), Table Storage (sessions, history), Key Vault (secrets),
//          Qdrant or Chroma, and optionally Neo4j (existing services, or self-hosted on Container Apps)
//   with Log Analytics + Application Insights for monitoring. No key or password is used where
//   Entra ID works: every Azure resource is reached with a managed identity.
targetScope = 'subscription'

// --- environment ----------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and seeds the unique resource names.')
param environmentName string

@minLength(1)
@description('Region of all resources; it must offer Flex Consumption (and the models, unless openAiLocation is set).')
// The regions that offer Flex Consumption (the list of the official Flex Consumption azd template,
// Nov 2025), so that another region fails before anything is created rather than at the plan.
// `az functionapp list-flexconsumption-locations` gives the current list; add new regions here.
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the deploying developer (azd sets it); gets the data roles of a keyless local run. Empty for none.')
param principalId string = ''

@description('Kind of principalId: User for a person, ServicePrincipal for a CI identity.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

// --- API Management -------------------------------------------------------------------------

@description('API Management tier. BasicV2 (default) is the smallest v2 tier with an SLA; Consumption bills per call but only limits rates per subscription key; Developer has no SLA.')
@allowed([
  'Consumption'
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'BasicV2'
  'StandardV2'
])
param apimSkuName string = 'BasicV2'

@description('Email that receives API Management system notifications; the default is a placeholder that receives nothing.')
param apimPublisherEmail string = 'noreply@example.com'

@description('Organization name shown in API Management notifications and the developer portal.')
param apimPublisherName string = 'Memory Layer'

@description('Browser origins allowed to call the API (CORS). Server-to-server callers need none.')
@minLength(1)
param corsAllowedOrigins array = [
  'http://localhost:3000'
]

@description('Calls allowed per subscription (each subscription is a tenant) in each rate-limit period, REST and MCP calls together.')
@minValue(1)
param rateLimitCalls int = 60

@description('Length of the rate-limit period, in seconds (API Management allows at most 300).')
@minValue(1)
@maxValue(300)
param rateLimitPeriodSeconds int = 60

@description('Calls allowed per subscription in each quota period.')
@minValue(1)
param quotaCalls int = 10000

@description('Length of the quota period, in seconds (86400 = one day).')
@minValue(300)
param quotaPeriodSeconds int = 86400

@description('Header API Management sets to the caller\'s subscription id: the app keeps every tenant\'s data apart (TENANT_HEADER). Empty turns tenancy off (one shared namespace for all subscriptions).')
param tenantHeader string = 'x-memory-tenant'

@description('Header API Management sets to the end user of a validated token (USER_HEADER): a user_id other than it is refused. Empty (the default) leaves user_id as the caller sends it.')
param userHeader string = ''

@description('OpenID configuration URL of the end-user token issuer; empty: Entra ID of this directory.')
param userTokenOpenIdConfigUrl string = ''

@description('Issuer the end-user token must carry; empty: Entra ID (v2.0 tokens) of this directory.')
param userTokenIssuer string = ''

@description('Audience the end-user token must carry: the client id (or application ID URI) of the API\'s app registration. Required when userHeader is set: empty with userHeader fails the deployment.')
param userTokenAudience string = ''

@description('Claim of the end-user token that names the user; oid is the Entra object id, stable across applications.')
param userTokenClaim string = 'oid'

@secure()
@minLength(32)
@description('Host key API Management sends to the Function App as x-functions-key (kept in Key Vault). azd generates it once and keeps it in the environment; with the Azure CLI, pass a random value and keep it (a new value rotates the key).')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
param functionHostKey string

@secure()
@minLength(32)
@description('System key of the Functions MCP extension (mcp_extension) API Management sends to the app\'s MCP endpoint (kept in Key Vault). azd generates it once and keeps it in the environment; with the Azure CLI, pass a random value and keep it (a new value rotates the key).')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
param mcpExtensionKey string

@secure()
@minLength(32)
@description('Key API Management signs the tenant and user headers with; the app believes them only with a valid signature (CALLER_SIGNING_KEY, kept in Key Vault). azd generates it once; with the Azure CLI, pass a random value and keep it (a new value rotates it for both).')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
param callerSigningKey string

// --- Function App ---------------------------------------------------------------------------

@description('Memory of each Function App instance, in MB.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Most Function App instances at once (caps cost and the load on the stores).')
@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 100

@description('Always-ready instances of the HTTP functions: kept running, so calls skip the cold start, and billed while idle. 0 (default) scales to zero.')
@minValue(0)
@maxValue(40)
param functionAlwaysReadyInstances int = 0

@description('Python log level of the service.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('Resource id of an existing action group that the alerts notify (email, SMS, webhook...); empty creates the alerts without notifications.')
param alertActionGroupId string = ''

@description('The p95 request latency, in milliseconds, above which the latency alert fires.')
@minValue(100)
param alertLatencyP95Ms int = 3000

@description('Replication of the storage account that holds sessions and memory history.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_ZRS'

@description('Purge protection on the Key Vault (irreversible once on): a deleted vault cannot be purged, and its name stays taken, for 90 days. Off, `azd down --purge` removes it for good.')
param keyVaultPurgeProtection bool = false

// --- Azure OpenAI ---------------------------------------------------------------------------

@description('Region of the Azure OpenAI account when it differs from location (model availability); empty means location.')
param openAiLocation string = ''

@description('Chat model (and deployment name) that answers and extracts memories.')
param chatModelName string = 'gpt-4o-mini'

@description('Version of the chat model.')
param chatModelVersion string = '2024-07-18'

@description('Capacity of the chat deployment, in thousands of tokens per minute.')
@minValue(1)
param chatCapacity int = 30

@description('Embedding model (and deployment name).')
param embeddingModelName string = 'text-embedding-3-small'

@description('Version of the embedding model.')
param embeddingModelVersion string = '1'

@description('Capacity of the embedding deployment, in thousands of tokens per minute.')
@minValue(1)
param embeddingCapacity int = 30

@description('Model tokens one tenant may spend per minute, chat and embeddings together (TENANT_TOKEN_BUDGET): its share of the deployments above, so that one tenant cannot keep them at 429 for all. Default: a third of the smaller deployment. 0: no budget.')
@minValue(0)
param tenantTokenBudget int = min(chatCapacity, embeddingCapacity) * 1000 / 3

@description('Deployment SKU of both models.')
@allowed([
  'GlobalStandard'
  'Standard'
  'DataZoneStandard'
])
param openAiDeploymentSkuName string = 'GlobalStandard'

// --- vector store ---------------------------------------------------------------------------

@description('Vector store: qdrant (Qdrant Cloud or any Qdrant server) or chroma (a Chroma server). Ignored when deploySelfHostedStores is true (Qdrant).')
@allowed([
  'qdrant'
  'chroma'
])
param vectorStore string = 'qdrant'

@description('Vector collection of the memories; distinct names let environments share one cluster.')
param collectionName string = 'memories'

@description('URL of an existing Qdrant server with its port, e.g. https://xyz.cloud.qdrant.io:6333. Required for qdrant unless deploySelfHostedStores.')
param qdrantUrl string = ''

@secure()
@description('API key of the Qdrant server (stored in Key Vault); empty when it needs none.')
param qdrantApiKey string = ''

@description('Host of an existing Chroma server (vectorStore = chroma).')
param chromaHost string = ''

@description('Port of the Chroma server.')
param chromaPort int = 443

@description('Reach the Chroma server over HTTPS.')
param chromaSsl bool = true

@secure()
@description('Bearer token of the Chroma server (stored in Key Vault); empty when it needs none.')
param chromaAuthToken string = ''

// --- graph store ----------------------------------------------------------------------------

@description('URI of an existing Neo4j, e.g. neo4j+s://xxxx.databases.neo4j.io (Aura); empty turns graph memory off.')
param neo4jUri string = ''

@description('Neo4j user.')
param neo4jUsername string = 'neo4j'

@description('Neo4j database.')
param neo4jDatabase string = 'neo4j'

@secure()
@description('Password of the Neo4j user (stored in Key Vault). With deploySelfHostedStores it is the password of the new Neo4j, and empty skips Neo4j.')
param neo4jPassword string = ''

// --- self-hosted stores ---------------------------------------------------------------------

@description('Run Qdrant (and Neo4j, when neo4jPassword is set) on Azure Container Apps with Azure Files storage inside a VNet the Function App joins, instead of using existing services.')
param deploySelfHostedStores bool = false

// --- names ----------------------------------------------------------------------------------

var abbrs = loadJsonContent('abbreviations.json')
// Unique per subscription, environment and region, stable across redeployments.
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
// Table names the app uses by default (shared/settings.py); set explicitly in the app settings.
var sessionsTableName = 'chatsessions'
var historyTableName = 'memoryhistory'
var eventsTableName = 'memoryevents'
var usageTableName = 'tenantusage'
// The ingestion queue of the queue-triggered function (shared/stores/queues.py INGEST_QUEUE).
var ingestQueueName = 'memory-ingest'

var effectiveVectorStore = deploySelfHostedStores ? 'qdrant' : vectorStore
var selfHostedNeo4j = deploySelfHostedStores && !empty(neo4jPassword)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identities 'app/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    functionIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}func-${resourceToken}'
    apimIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}apim-${resourceToken}'
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
  }
}

module observability 'app/observability.bicep' = {
  name: 'observability'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupId: alertActionGroupId
    latencyP95ThresholdMs: alertLatencyP95Ms
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    sessionsTableName: sessionsTableName
    historyTableName: historyTableName
    eventsTableName: eventsTableName
    usageTableName: usageTableName
    ingestQueueName: ingestQueueName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    purgeProtection: keyVaultPurgeProtection
    neo4jPassword: neo4jPassword
    qdrantApiKey: qdrantApiKey
    chromaAuthToken: chromaAuthToken
    callerSigningKey: callerSigningKey
  }
}

module openAi 'app/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    name: '${abbrs.cognitiveServicesAccounts}${resourceToken}'
    chatModelName: chatModelName
    chatModelVersion: chatModelVersion
    chatCapacity: chatCapacity
    embeddingModelName: embeddingModelName
    embeddingModelVersion: embeddingModelVersion
    embeddingCapacity: embeddingCapacity
    deploymentSkuName: openAiDeploymentSkuName
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    functionPrincipalId: identities.outputs.functionIdentityPrincipalId
    apimPrincipalId: identities.outputs.apimIdentityPrincipalId
    developerPrincipalId: principalId
    developerPrincipalType: principalType
    storageAccountName: storage.outputs.name
    openAiAccountName: openAi.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module selfHostedStores 'app/self-hosted-stores.bicep' = if (deploySelfHostedStores) {
  name: 'self-hosted-stores'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    abbrs: abbrs
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    qdrantApiKey: qdrantApiKey
    neo4jPassword: neo4jPassword
  }
}

module apim 'app/apim.bicep' = {
  name: 'apim'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.apiManagementService}${resourceToken}'
    skuName: apimSkuName
    publisherEmail: apimPublisherEmail
    publisherName: apimPublisherName
    identityId: identities.outputs.apimIdentityId
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionMaximumInstanceCount
    alwaysReadyInstances: functionAlwaysReadyInstances
    identityId: identities.outputs.functionIdentityId
    identityClientId: identities.outputs.functionIdentityClientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    sessionsTableName: sessionsTableName
    historyTableName: historyTableName
    eventsTableName: eventsTableName
    usageTableName: usageTableName
    tenantTokenBudget: tenantTokenBudget
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    logLevel: logLevel
    vectorStore: effectiveVectorStore
    collectionName: collectionName
    qdrantUrl: deploySelfHostedStores ? selfHostedStores.outputs.qdrantUrl : qdrantUrl
    qdrantApiKeySecretUri: keyVault.outputs.qdrantApiKeySecretUri
    chromaHost: chromaHost
    chromaPort: chromaPort
    chromaSsl: chromaSsl
    chromaAuthTokenSecretUri: keyVault.outputs.chromaAuthTokenSecretUri
    openAiEndpoint: openAi.outputs.endpoint
    chatDeploymentName: openAi.outputs.chatDeploymentName
    embeddingDeploymentName: openAi.outputs.embeddingDeploymentName
    embeddingModelName: openAi.outputs.embeddingModelName
    neo4jUri: selfHostedNeo4j ? selfHostedStores.outputs.neo4jUri : neo4jUri
    neo4jUsername: neo4jUsername
    neo4jDatabase: neo4jDatabase
    neo4jPasswordSecretUri: keyVault.outputs.neo4jPasswordSecretUri
    allowedCallerIpAddresses: apim.outputs.outboundIpAddresses
    tenantHeader: tenantHeader
    userHeader: userHeader
    callerSigningKeySecretUri: keyVault.outputs.callerSigningKeySecretUri
    apimIdentityClientId: identities.outputs.apimIdentityClientId
    virtualNetworkSubnetId: deploySelfHostedStores ? selfHostedStores.outputs.functionAppSubnetId : ''
  }
  // The host reads its storage and Key Vault references with the identity as soon as it starts.
  dependsOn: [
    rbac
  ]
}

// End-user tokens are Entra ID v2.0 tokens of this directory unless the parameters name another issuer.
var entraAuthority = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

module apimApi 'app/apim-api.bicep' = {
  name: 'apim-api'
  scope: rg
  params: {
    apimName: apim.outputs.name
    apimSkuName: apimSkuName
    apimIdentityClientId: identities.outputs.apimIdentityClientId
    functionAppName: functionApp.outputs.name
    functionAppAudience: functionApp.outputs.authAudience
    keyVaultName: keyVault.outputs.name
    functionHostKey: functionHostKey
    mcpExtensionKey: mcpExtensionKey
    callerSigningKeySecretUri: keyVault.outputs.callerSigningKeySecretUri
    corsAllowedOrigins: corsAllowedOrigins
    rateLimitCalls: rateLimitCalls
    rateLimitPeriodSeconds: rateLimitPeriodSeconds
    quotaCalls: quotaCalls
    quotaPeriodSeconds: quotaPeriodSeconds
    tenantHeader: tenantHeader
    userHeader: userHeader
    userTokenOpenIdConfigUrl: empty(userTokenOpenIdConfigUrl) ? '${entraAuthority}/.well-known/openid-configuration' : userTokenOpenIdConfigUrl
    userTokenIssuer: empty(userTokenIssuer) ? entraAuthority : userTokenIssuer
    // The module requires a non-empty audience: with userHeader set, an empty userTokenAudience fails
    // the deployment there; without userHeader no token is validated and a stand-in is passed.
    userTokenAudience: empty(userHeader) ? 'unused-without-userHeader' : userTokenAudience
    userTokenClaim: userTokenClaim
  }
  // APIM reads the function key from Key Vault with its identity when the named value is created.
  // The host key is written to the app after its settings (the module waits for functionApp).
  dependsOn: [
    rbac
  ]
}

// --- outputs (azd stores them in the environment: `azd env get-values`) ----------------------

output AZURE_MONITOR_WORKBOOK_ID string = observability.outputs.workbookId
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output AZURE_CLIENT_ID string = identities.outputs.functionIdentityClientId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_TABLES_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAi.outputs.chatDeploymentName
output AZURE_EMBEDDING_DEPLOYMENT string = openAi.outputs.embeddingDeploymentName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output APIM_NAME string = apim.outputs.name
output APIM_GATEWAY_URL string = apim.outputs.gatewayUrl
output APIM_SUBSCRIPTION_NAME string = apimApi.outputs.subscriptionName
output APIM_MCP_URL string = '${apim.outputs.gatewayUrl}/${apimApi.outputs.mcpApiPath}/mcp'
