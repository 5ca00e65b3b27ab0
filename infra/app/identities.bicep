// The two user-assigned identities of the deployment. They are created first, on their own, so that
// every role assignment (rbac.bicep) can exist before the resources that rely on them start.

@description('Azure region of the identities.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the identity the Function App runs as (storage, Azure OpenAI, Key Vault, telemetry).')
param functionIdentityName string

@description('Name of the identity API Management uses to read the function key from Key Vault.')
param apimIdentityName string

resource functionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: functionIdentityName
  location: location
  tags: tags
}

resource apimIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: apimIdentityName
  location: location
  tags: tags
}

output functionIdentityId string = functionIdentity.id
output functionIdentityClientId string = functionIdentity.properties.clientId
output functionIdentityPrincipalId string = functionIdentity.properties.principalId
output apimIdentityId string = apimIdentity.id
output apimIdentityClientId string = apimIdentity.properties.clientId
output apimIdentityPrincipalId string = apimIdentity.properties.principalId
