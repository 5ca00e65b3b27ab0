// Private DNS of an internal Container Apps environment: a zone named after the environment's default
// domain, wildcard records to its static IP, and a link that makes the zone resolve inside the VNet.
// The domain and the IP are known only once the environment exists, and a resource name must be known
// when the deployment starts (BCP120): as parameters of this module they are, because a module's
// deployment starts after the values it is given.

@description('Default domain of the Container Apps environment (environment.properties.defaultDomain); names the zone.')
param zoneName string

@description('Static IP of the internal environment (environment.properties.staticIp); every app name resolves to it.')
param staticIp string

@description('Resource id of the virtual network whose resolvers answer from the zone.')
param virtualNetworkId string

@description('Tags applied to every resource.')
param tags object

resource dnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: zoneName
  location: 'global'
  tags: tags
}

// <app>.<domain>: the apps' ingress names.
resource wildcardRecord 'Microsoft.Network/privateDnsZones/A@2020-06-01' = {
  parent: dnsZone
  name: '*'
  properties: {
    ttl: 3600
    aRecords: [
      {
        ipv4Address: staticIp
      }
    ]
  }
}

// <app>.internal.<domain>: the names Container Apps gives internal-only ingress.
resource internalWildcardRecord 'Microsoft.Network/privateDnsZones/A@2020-06-01' = {
  parent: dnsZone
  name: '*.internal'
  properties: {
    ttl: 3600
    aRecords: [
      {
        ipv4Address: staticIp
      }
    ]
  }
}

resource dnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: dnsZone
  name: 'vnet'
  location: 'global'
  tags: tags
  properties: {
    // The apps' names come from the records above; nothing in the VNet registers itself.
    registrationEnabled: false
    virtualNetwork: {
      id: virtualNetworkId
    }
  }
}

output zoneName string = dnsZone.name
