// Key Vault for the few secrets that have no Entra ID alternative: the Neo4j password, the Qdrant
// API key, the Chroma token, the key API Management signs the caller headers with (read by both the
// app and APIM), and (written by apim-api.bicep) the function and MCP extension keys APIM sends.
// Access is Azure RBAC only; soft delete keeps a deleted secret recoverable for 90 days, and purge
// protection (optional, see purgeProtection) keeps it from being purged in that time.

@description('Azure region of the vault.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Log Analytics workspace that receives the vault audit log.')
param logAnalyticsId string

@description('Turn on purge protection (irreversible): a deleted vault and its secrets cannot be purged for 90 days, and the vault name stays taken that long.')
param purgeProtection bool = false

@secure()
@description('Neo4j password; stored as the secret neo4j-password when not empty.')
param neo4jPassword string = ''

@secure()
@description('Qdrant API key; stored as the secret qdrant-api-key when not empty.')
param qdrantApiKey string = ''

@secure()
@description('Chroma bearer token; stored as the secret chroma-auth-token when not empty.')
param chromaAuthToken string = ''

@secure()
@minLength(32)
@description('Key API Management signs the tenant and user headers with (CALLER_SIGNING_KEY of the app); stored as the secret caller-signing-key.')
param callerSigningKey string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_42: the vault is recoverable: soft delete is on for 90 days; the check also wants purge protection, which is a parameter (see CKV_AZURE_110).
  // checkov:skip=CKV_AZURE_110: purge protection is a parameter (purgeProtection, off by default so that azd down --purge and azd up can reuse the environment's vault name); the vault only holds copies of secrets kept elsewhere.
  // checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration and API Management (v2/Consumption tiers) reach the vault over its public endpoint; access is Entra ID + RBAC only.
  // checkov:skip=CKV_AZURE_189: same reason: the callers have no private network path to the vault.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Off by default (purgeProtection): the vault name is fixed per environment, and a purge-protected
    // vault keeps it taken for 90 days after azd down, which breaks the next azd up. Its secrets are
    // copies (store credentials and the function host key come from the azd environment); see docs/deploy.md.
    // Once on, the API refuses false: null leaves the setting as it is.
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Flex Consumption (no VNet) resolves Key Vault references over the public endpoint and
      // API Management (v2/Consumption tiers, no VNet) reads the function key the same way.
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Secrets carry no expiry date: the Neo4j/Qdrant/Chroma credentials are rotated by their provider,
// and an expired secret would silently break the Key Vault reference of the app setting.
resource neo4jPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(neo4jPassword)) {
  // checkov:skip=CKV_AZURE_41: rotated by the Neo4j/Qdrant/Chroma provider; an expiry date would silently break the app's Key Vault reference.
  // checkov:skip=CKV_AZURE_114: false positive: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: 'neo4j-password'
  properties: {
    value: neo4jPassword
    contentType: 'text/plain'
  }
}

resource qdrantApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(qdrantApiKey)) {
  // checkov:skip=CKV_AZURE_41: rotated by the Neo4j/Qdrant/Chroma provider; an expiry date would silently break the app's Key Vault reference.
  // checkov:skip=CKV_AZURE_114: false positive: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: 'qdrant-api-key'
  properties: {
    value: qdrantApiKey
    contentType: 'text/plain'
  }
}

resource chromaAuthTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(chromaAuthToken)) {
  // checkov:skip=CKV_AZURE_41: rotated by the Neo4j/Qdrant/Chroma provider; an expiry date would silently break the app's Key Vault reference.
  // checkov:skip=CKV_AZURE_114: false positive: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: 'chroma-auth-token'
  properties: {
    value: chromaAuthToken
    contentType: 'text/plain'
  }
}

// The app and APIM both read this one secret (a Key Vault reference and a Key Vault named value), so
// they hold the same signing key by construction; a new callerSigningKey value rotates it for both.
resource callerSigningKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the value changes only with the callerSigningKey parameter; an expiry date would make the app refuse every caller.
  parent: vault
  name: 'caller-signing-key'
  properties: {
    value: callerSigningKey
    contentType: 'text/plain'
  }
}

resource auditLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
// Versionless secret URIs: the app picks up a new secret version without a redeployment.
output neo4jPasswordSecretUri string = empty(neo4jPassword) ? '' : neo4jPasswordSecret.properties.secretUri
output qdrantApiKeySecretUri string = empty(qdrantApiKey) ? '' : qdrantApiKeySecret.properties.secretUri
output chromaAuthTokenSecretUri string = empty(chromaAuthToken) ? '' : chromaAuthTokenSecret.properties.secretUri
output callerSigningKeySecretUri string = callerSigningKeySecret.properties.secretUri
